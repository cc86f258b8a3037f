// Command kubesim stands in for kube-scheduler and kubelets in the local test
// cluster: it registers fake Nodes, binds unscheduled Pods to them and writes
// Pod statuses as a kubelet would, without running any container.
//
// Behaviour per pod (see tests/cluster/README.md):
//
//   - restartPolicy Always (Deployments, StatefulSets, ...): Running and Ready
//     after sim.fediops.test/delay-seconds (default --ready-delay, 0).
//   - restartPolicy Never/OnFailure (Jobs): Running (and Ready), then Succeeded (exit 0)
//     after sim.fediops.test/delay-seconds (default --job-duration, 1s).
//   - annotation sim.fediops.test/fail: "true", or an image containing ":fail":
//     Never/OnFailure pods end Failed (exit code 1, reason Error, "simulated
//     failure"); Always pods crash-loop (Running, not Ready, waiting
//     CrashLoopBackOff, lastState terminated with exit code 1).
//   - annotation sim.fediops.test/never-ready: "true", or an image containing
//     "never-ready": Running, never Ready.
//
// Deleted pods bound to a simulated node terminate as on a kubelet (preStop,
// SIGTERM, grace period; lifecycle.go), then are removed with a grace-0 delete.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const (
	annPrefix        = "sim.fediops.test/"
	annFail          = annPrefix + "fail"
	annNeverReady    = annPrefix + "never-ready"
	annDelay         = annPrefix + "delay-seconds"
	annFailMessage   = annPrefix + "fail-message"
	annExitCode      = annPrefix + "exit-code"
	nodeLabel        = "sim.fediops.test/node"
	defaultFailMsg   = "simulated failure"
	heartbeatPeriod  = 20 * time.Second
	statusUpdateWait = 50 * time.Millisecond
)

type sim struct {
	client      kubernetes.Interface
	pods        corelisters.PodLister
	queue       workqueue.TypedRateLimitingInterface[string]
	nodes       []string
	jobDuration time.Duration

	mu       sync.Mutex
	next     int                  // round-robin node index
	ipSeq    int                  // last pod IP handed out
	ips      map[types.UID]string // pod UID -> pod IP
	boundAt  map[types.UID]time.Time
	nodeSet  map[string]bool
	hostIP   string
	podCIDR  string
	capacity corev1.ResourceList
}

func main() {
	var (
		kubeconfig  = flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster")
		nodeCount   = flag.Int("nodes", 1, "number of simulated nodes")
		nodePrefix  = flag.String("node-prefix", "sim-node-", "name prefix of simulated nodes")
		jobDuration = flag.Duration("job-duration", time.Second, "how long run-to-completion pods run before they succeed or fail")
		cpu         = flag.String("node-cpu", "32", "cpu capacity of each node")
		memory      = flag.String("node-memory", "256Gi", "memory capacity of each node")
		maxPods     = flag.String("node-pods", "250", "pod capacity of each node")
		workers     = flag.Int("workers", 4, "parallel pod workers")
	)
	klog.InitFlags(nil)
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "kubesim"
	client := kubernetes.NewForConfigOrDie(cfg)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()

	s := &sim{
		client:      client,
		jobDuration: *jobDuration,
		ips:         map[types.UID]string{},
		boundAt:     map[types.UID]time.Time{},
		nodeSet:     map[string]bool{},
		hostIP:      "127.0.0.1",
		capacity: corev1.ResourceList{
			corev1.ResourceCPU:              resource.MustParse(*cpu),
			corev1.ResourceMemory:           resource.MustParse(*memory),
			corev1.ResourcePods:             resource.MustParse(*maxPods),
			corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
		},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "kubesim"}),
	}
	for i := 0; i < *nodeCount; i++ {
		name := fmt.Sprintf("%s%d", *nodePrefix, i)
		s.nodes = append(s.nodes, name)
		s.nodeSet[name] = true
	}
	if err := s.registerNodes(ctx); err != nil {
		klog.Fatalf("registering nodes: %v", err)
	}
	go s.heartbeat(ctx)

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods()
	s.pods = podInformer.Lister()
	enqueue := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			s.queue.Add(key)
		}
	}
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
		DeleteFunc: func(obj interface{}) {
			if pod, ok := obj.(*corev1.Pod); ok {
				s.forget(pod.UID)
			}
		},
	})
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInformer.Informer().HasSynced) {
		klog.Fatal("pod informer did not sync")
	}
	klog.Infof("kubesim ready: nodes=%v job-duration=%s", s.nodes, s.jobDuration)
	fmt.Println("kubesim ready") // marker for localcluster.py

	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
}

// ---------------------------------------------------------------- nodes

func (s *sim) nodeObject(name string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kubesim",
				nodeLabel:                "true",
			},
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
		},
	}
}

func (s *sim) nodeStatus() corev1.NodeStatus {
	now := metav1.Now()
	cond := func(t corev1.NodeConditionType, st corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: st, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return corev1.NodeStatus{
		Capacity:    s.capacity,
		Allocatable: s.capacity,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "kubesim node is ready"),
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", "simulated"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "simulated"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "simulated"),
			cond(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "RouteCreated", "simulated"),
		},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: s.hostIP},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 0}},
		NodeInfo: corev1.NodeSystemInfo{
			Architecture:            "amd64",
			OperatingSystem:         "linux",
			OSImage:                 "kubesim",
			KernelVersion:           "kubesim",
			ContainerRuntimeVersion: "kubesim://0.1",
			KubeletVersion:          "v1.34.4-kubesim",
			KubeProxyVersion:        "",
		},
	}
}

func (s *sim) registerNodes(ctx context.Context) error {
	for _, name := range s.nodes {
		err := retry.OnError(retry.DefaultBackoff, func(error) bool { return true }, func() error {
			node, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				node, err = s.client.CoreV1().Nodes().Create(ctx, s.nodeObject(name), metav1.CreateOptions{})
			}
			if err != nil {
				return err
			}
			node.Status = s.nodeStatus()
			node, err = s.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
			if err != nil {
				return err
			}
			return s.untaint(ctx, node)
		})
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		klog.Infof("registered node %s", name)
	}
	return nil
}

// untaint removes the not-ready/unreachable taints that the API server's
// TaintNodesByCondition admission puts on new nodes; the node lifecycle
// controller, which would normally do it, is disabled in this cluster.
func (s *sim) untaint(ctx context.Context, node *corev1.Node) error {
	var keep []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Key != corev1.TaintNodeNotReady && t.Key != corev1.TaintNodeUnreachable {
			keep = append(keep, t)
		}
	}
	if len(keep) == len(node.Spec.Taints) {
		return nil
	}
	node.Spec.Taints = keep
	_, err := s.client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	return err
}

// heartbeat keeps the Ready condition fresh, as a kubelet would.
func (s *sim) heartbeat(ctx context.Context) {
	t := time.NewTicker(heartbeatPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range s.nodes {
			err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
				node, err := s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				if apierrors.IsNotFound(err) {
					_, err = s.client.CoreV1().Nodes().Create(ctx, s.nodeObject(name), metav1.CreateOptions{})
					if err != nil {
						return err
					}
					node, err = s.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
				}
				if err != nil {
					return err
				}
				old := map[corev1.NodeConditionType]metav1.Time{}
				for _, c := range node.Status.Conditions {
					if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
						old[c.Type] = c.LastTransitionTime
					}
				}
				node.Status = s.nodeStatus()
				for i, c := range node.Status.Conditions {
					if ts, ok := old[c.Type]; ok {
						node.Status.Conditions[i].LastTransitionTime = ts
					}
				}
				node, err = s.client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
				if err != nil {
					return err
				}
				return s.untaint(ctx, node)
			})
			if err != nil && ctx.Err() == nil {
				klog.Warningf("heartbeat for node %s: %v", name, err)
			}
		}
	}
}

// ---------------------------------------------------------------- pods

func (s *sim) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ips, uid)
	delete(s.boundAt, uid)
}

func (s *sim) processNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	requeue, err := s.sync(ctx, key)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			klog.Warningf("pod %s: %v (retrying)", key, err)
		}
		s.queue.AddRateLimited(key)
	case requeue > 0:
		s.queue.Forget(key)
		s.queue.AddAfter(key, requeue)
	default:
		s.queue.Forget(key)
	}
	return true
}

func (s *sim) pickNode() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[s.next%len(s.nodes)]
	s.next++
	return n
}

func (s *sim) podIP(uid types.UID) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ip, ok := s.ips[uid]; ok {
		return ip
	}
	s.ipSeq++
	// Addresses from a private range, written into status only: nothing
	// listens on them and nothing here ever connects to them.
	ip := fmt.Sprintf("10.244.%d.%d", (s.ipSeq/250)%250, s.ipSeq%250+2)
	s.ips[uid] = ip
	return ip
}

func (s *sim) firstSeen(uid types.UID) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.boundAt[uid]
	if !ok {
		t = time.Now()
		s.boundAt[uid] = t
	}
	return t
}

func truthy(v string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(v))
	return err == nil && b
}

func wantsFailure(pod *corev1.Pod) bool {
	if truthy(pod.Annotations[annFail]) || truthy(pod.Labels[annFail]) {
		return true
	}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if strings.Contains(c.Image, ":fail") {
			return true
		}
	}
	return false
}

func neverReady(pod *corev1.Pod) bool {
	return truthy(pod.Annotations[annNeverReady]) || truthy(pod.Labels[annNeverReady]) || imageNeverReady(pod)
}

func (s *sim) delay(pod *corev1.Pod, def time.Duration) time.Duration {
	v, ok := pod.Annotations[annDelay]
	if !ok {
		v, ok = pod.Labels[annDelay]
	}
	if ok {
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 {
			return time.Duration(f * float64(time.Second))
		}
		klog.Warningf("pod %s/%s: bad %s %q ignored", pod.Namespace, pod.Name, annDelay, v)
	}
	return def
}

// requestedNode is the node a pod pins itself to: nodeSelector
// kubernetes.io/hostname, or (DaemonSet pods) a required node affinity on
// metadata.name / kubernetes.io/hostname. Empty when any node will do.
func requestedNode(pod *corev1.Pod) string {
	if n := pod.Spec.NodeSelector["kubernetes.io/hostname"]; n != "" {
		return n
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		reqs := append(append([]corev1.NodeSelectorRequirement{}, term.MatchFields...), term.MatchExpressions...)
		for _, r := range reqs {
			if (r.Key == "metadata.name" || r.Key == "kubernetes.io/hostname") &&
				r.Operator == corev1.NodeSelectorOpIn && len(r.Values) > 0 {
				return r.Values[0]
			}
		}
	}
	return ""
}

func (s *sim) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}

	// 1. Deletion: preStop, SIGTERM and exit within the grace period (lifecycle.go).
	if pod.DeletionTimestamp != nil {
		return s.terminate(ctx, pod)
	}

	// 2. Scheduling: bind pods nobody has placed yet.
	if pod.Spec.NodeName == "" {
		if pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName {
			return 0, nil
		}
		node := requestedNode(pod)
		if !s.nodeSet[node] {
			node = s.pickNode()
		}
		err := s.client.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return 0, nil // already bound or gone; the informer brings the update
		}
		if err != nil {
			return 0, err
		}
		klog.V(2).Infof("bound %s to %s", key, node)
		return 0, nil
	}
	if !s.nodeSet[pod.Spec.NodeName] {
		return 0, nil // someone else's node
	}

	// 3. Status, as a kubelet would write it.
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return 0, nil
	}
	seen := s.firstSeen(pod.UID)
	runToCompletion := pod.Spec.RestartPolicy == corev1.RestartPolicyNever ||
		pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure
	fail := wantsFailure(pod)

	var target string // Running, Ready, Succeeded, Failed, CrashLoop, NotReady
	var wait time.Duration
	switch {
	case runToCompletion:
		// Running at once, finished after the delay.
		d := s.delay(pod, s.jobDuration)
		if el := time.Since(seen); el < d {
			target, wait = "Running", d-el
		} else if fail {
			target = "Failed"
		} else {
			target = "Succeeded"
		}
	default:
		d := s.delay(pod, *readyDelay)
		if el := time.Since(seen); el < d {
			target, wait = "Starting", d-el
		} else if fail {
			target = "CrashLoop"
		} else if neverReady(pod) {
			target = "NotReady"
		} else {
			target = "Ready"
		}
	}

	status := s.buildStatus(pod, target, seen)
	if statusEqual(&pod.Status, status) {
		return wait, nil
	}
	upd := pod.DeepCopy()
	upd.Status = *status
	_, err = s.client.CoreV1().Pods(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if apierrors.IsConflict(err) {
		return statusUpdateWait, nil
	}
	if err != nil {
		return 0, err
	}
	klog.V(1).Infof("pod %s -> %s", key, target)
	return wait, nil
}

// statusEqual compares the parts of a status kubesim writes, ignoring times.
func statusEqual(a, b *corev1.PodStatus) bool {
	if a.Phase != b.Phase || a.PodIP != b.PodIP || a.HostIP != b.HostIP ||
		len(a.ContainerStatuses) != len(b.ContainerStatuses) ||
		len(a.InitContainerStatuses) != len(b.InitContainerStatuses) {
		return false
	}
	cs := func(x, y []corev1.ContainerStatus) bool {
		for i := range x {
			if x[i].Name != y[i].Name || x[i].Ready != y[i].Ready ||
				(x[i].State.Running == nil) != (y[i].State.Running == nil) ||
				(x[i].State.Waiting == nil) != (y[i].State.Waiting == nil) ||
				(x[i].State.Terminated == nil) != (y[i].State.Terminated == nil) {
				return false
			}
		}
		return true
	}
	if !cs(a.ContainerStatuses, b.ContainerStatuses) || !cs(a.InitContainerStatuses, b.InitContainerStatuses) {
		return false
	}
	for _, cb := range b.Conditions {
		found := false
		for _, ca := range a.Conditions {
			if ca.Type == cb.Type {
				found = ca.Status == cb.Status
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func (s *sim) buildStatus(pod *corev1.Pod, target string, seen time.Time) *corev1.PodStatus {
	now := metav1.Now()
	started := metav1.NewTime(seen)
	ip := s.podIP(pod.UID)
	if pod.Spec.HostNetwork {
		ip = s.hostIP
	}
	failMsg := pod.Annotations[annFailMessage]
	if failMsg == "" {
		failMsg = defaultFailMsg
	}
	exitCode := int32(1)
	if v, err := strconv.Atoi(pod.Annotations[annExitCode]); err == nil && v != 0 {
		exitCode = int32(v)
	}

	st := &corev1.PodStatus{
		HostIP:    s.hostIP,
		HostIPs:   []corev1.HostIP{{IP: s.hostIP}},
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		StartTime: &started,
		QOSClass:  pod.Status.QOSClass,
	}
	if st.QOSClass == "" {
		st.QOSClass = corev1.PodQOSBestEffort
	}

	ready, containersReady := false, false
	for _, ic := range pod.Spec.InitContainers {
		ics := corev1.ContainerStatus{
			Name: ic.Name, Image: ic.Image, ImageID: "sim://" + ic.Image,
			ContainerID: "sim://" + string(pod.UID) + "/" + ic.Name,
		}
		if ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			t := true
			ics.Started = &t
			ics.Ready = true
			ics.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		} else {
			f := false
			ics.Started = &f
			ics.Ready = true
			ics.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: started}
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, ics)
	}

	for _, c := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "sim://" + c.Image,
			ContainerID: "sim://" + string(pod.UID) + "/" + c.Name,
		}
		t, f := true, false
		switch target {
		case "Starting":
			cs.Started = &f
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
			cs.ContainerID = ""
		case "NotReady":
			cs.Started = &t
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		case "Running", "Ready":
			cs.Started = &t
			cs.Ready = true
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: started}
		case "CrashLoop":
			cs.Started = &f
			cs.RestartCount = 1
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
				Message: fmt.Sprintf("back-off restarting failed container %s: %s", c.Name, failMsg)}
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: exitCode, Reason: "Error", Message: failMsg, StartedAt: started, FinishedAt: now,
				ContainerID: cs.ContainerID}
		case "Succeeded":
			cs.Started = &f
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}
		case "Failed":
			cs.Started = &f
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: exitCode, Reason: "Error", Message: failMsg, StartedAt: started, FinishedAt: now,
				ContainerID: cs.ContainerID}
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}

	switch target {
	case "Starting":
		st.Phase = corev1.PodPending
	case "NotReady", "CrashLoop":
		st.Phase = corev1.PodRunning
	case "Running", "Ready":
		st.Phase = corev1.PodRunning
		ready, containersReady = true, true
	case "Succeeded":
		st.Phase = corev1.PodSucceeded
	case "Failed":
		st.Phase = corev1.PodFailed
		st.Reason = ""
		st.Message = failMsg
	}
	// Readiness gates not owned by us keep the pod un-Ready, as on a kubelet.
	for _, g := range pod.Spec.ReadinessGates {
		ok := false
		for _, c := range pod.Status.Conditions {
			if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
				ok = true
			}
		}
		if !ok {
			ready = false
		}
	}

	b := func(v bool) corev1.ConditionStatus {
		if v {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	running := st.Phase == corev1.PodRunning
	reason := func(v bool, r string) string {
		if v {
			return ""
		}
		return r
	}
	conds := []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: b(running || target == "Starting")},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
		{Type: corev1.ContainersReady, Status: b(containersReady), Reason: reason(containersReady, "ContainersNotReady")},
		{Type: corev1.PodReady, Status: b(ready), Reason: reason(ready, "ContainersNotReady")},
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}
	if st.Phase == corev1.PodSucceeded {
		conds[2].Reason, conds[3].Reason = "PodCompleted", "PodCompleted"
	}
	// Keep transition times stable when a condition did not change, and keep
	// conditions written by others (DisruptionTarget, readiness gates, ...).
	for i := range conds {
		conds[i].LastTransitionTime = now
		for _, old := range pod.Status.Conditions {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	for _, old := range pod.Status.Conditions {
		mine := false
		for _, c := range conds {
			if c.Type == old.Type {
				mine = true
			}
		}
		if !mine {
			conds = append(conds, old)
		}
	}
	st.Conditions = conds
	return st
}

func init() {
	utilruntime.ReallyCrash = false
}
