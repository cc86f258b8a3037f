// What a kubelet does around a pod's readiness and termination that matters
// to a rolling update (see tests/cluster/README.md, "kubesim: what pods do"):
//
//   - a readiness delay: restartPolicy Always pods become Ready after
//     --ready-delay (default 0), or after the pod's own
//     sim.fediops.test/delay-seconds;
//   - an image whose reference contains "never-ready" starts but never becomes
//     Ready (like the never-ready annotation), so an upgrade to it can be
//     watched failing while the old pods keep serving;
//   - graceful termination: a deleted pod that was running stays Terminating
//     while its preStop hook runs (lifecycle.preStop.sleep.seconds, or an exec
//     hook's "sleep N"), then for sim.fediops.test/stop-seconds (how long the
//     process takes to exit after SIGTERM, default 0), never longer than its
//     grace period; during the stop time its containers are running but not
//     ready (the server closed its socket, readiness fails); then the
//     containers are terminated (exit 0, or 137 when the grace period ran out),
//     the pod gets its terminal phase, and it is removed with a grace-0 delete,
//     as the kubelet does.
//
// The EndpointSlice controller (the real one, in kube-controller-manager)
// derives each endpoint's ready/serving/terminating conditions from the pod's
// Ready condition and deletionTimestamp; nothing here writes EndpointSlices.
package main

import (
	"context"
	"flag"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

const (
	annStopSeconds  = annPrefix + "stop-seconds"
	neverReadyImage = "never-ready"
	exitKilled      = 137 // 128 + SIGKILL, what a runtime reports for a container killed at the end of the grace period
)

var (
	readyDelay = flag.Duration("ready-delay", 0,
		"how long restartPolicy Always pods take to become Ready (annotation "+annDelay+" overrides)")
	sleepRE = regexp.MustCompile(`(?:^|[\s;&|(])sleep\s+([0-9]+(?:\.[0-9]+)?)`)
)

// imageNeverReady: an image reference containing "never-ready".
func imageNeverReady(pod *corev1.Pod) bool {
	for _, c := range pod.Spec.Containers {
		if strings.Contains(c.Image, neverReadyImage) {
			return true
		}
	}
	return false
}

// preStopSeconds is how long the slowest container's preStop hook runs: the
// kubelet's sleep action, or the sum of the "sleep N" of an exec hook.
func preStopSeconds(pod *corev1.Pod) float64 {
	longest := 0.0
	for _, c := range pod.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			continue
		}
		h, d := c.Lifecycle.PreStop, 0.0
		switch {
		case h.Sleep != nil:
			d = float64(h.Sleep.Seconds)
		case h.Exec != nil:
			for _, m := range sleepRE.FindAllStringSubmatch(strings.Join(h.Exec.Command, " "), -1) {
				if f, err := strconv.ParseFloat(m[1], 64); err == nil {
					d += f
				}
			}
		}
		longest = math.Max(longest, d)
	}
	return longest
}

func stopSeconds(pod *corev1.Pod) float64 {
	if v, ok := pod.Annotations[annStopSeconds]; ok {
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 {
			return f
		}
		klog.Warningf("pod %s/%s: bad %s %q ignored", pod.Namespace, pod.Name, annStopSeconds, v)
	}
	return 0
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// terminate finishes the deletion of a pod on a simulated node the way a
// kubelet would: preStop, SIGTERM, the process's exit, within the grace period.
func (s *sim) terminate(ctx context.Context, pod *corev1.Pod) (time.Duration, error) {
	if pod.Spec.NodeName == "" || !s.nodeSet[pod.Spec.NodeName] {
		return 0, nil
	}
	if pod.Status.Phase == corev1.PodRunning {
		grace := 0.0
		if pod.DeletionGracePeriodSeconds != nil {
			grace = float64(*pod.DeletionGracePeriodSeconds)
		} else if pod.Spec.TerminationGracePeriodSeconds != nil {
			grace = float64(*pod.Spec.TerminationGracePeriodSeconds)
		}
		hook, stop := preStopSeconds(pod), stopSeconds(pod)
		// The API server set deletionTimestamp = time of the delete + grace period.
		started := pod.DeletionTimestamp.Add(-seconds(grace))
		hookEnd := started.Add(seconds(math.Min(hook, grace)))
		finish := started.Add(seconds(math.Min(hook+stop, grace)))
		if wait := time.Until(finish); wait > 0 {
			if untilTerm := time.Until(hookEnd); untilTerm > 0 {
				return untilTerm, nil // preStop runs; readiness as before (the server still serves)
			}
			if podReady(pod) {
				// SIGTERM has been sent: the server closed its socket, readiness fails.
				return wait, s.writeStatus(ctx, pod, s.buildStatus(pod, "NotReady", s.firstSeen(pod.UID)))
			}
			return wait, nil
		}
		if err := s.writeStatus(ctx, pod, s.terminatedStatus(pod, hook+stop > grace)); err != nil {
			return 0, err
		}
		klog.V(1).Infof("pod %s/%s terminated after %.1fs (preStop %.1fs, stop %.1fs, grace %.0fs)",
			pod.Namespace, pod.Name, time.Since(started).Seconds(), hook, stop, grace)
	}
	zero := int64(0)
	uid := pod.UID
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return 0, nil
	}
	return 0, err
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (s *sim) writeStatus(ctx context.Context, pod *corev1.Pod, status *corev1.PodStatus) error {
	upd := pod.DeepCopy()
	upd.Status = *status
	_, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or changed meanwhile: the informer brings the update and the pod is synced again
	}
	return err
}

// terminatedStatus: every container terminated, the pod in its terminal phase
// (Succeeded when all exited 0, Failed when the grace period ran out), not Ready.
func (s *sim) terminatedStatus(pod *corev1.Pod, killed bool) *corev1.PodStatus {
	st := s.buildStatus(pod, "NotReady", s.firstSeen(pod.UID))
	now := metav1.Now()
	code, reason, phase := int32(0), "Completed", corev1.PodSucceeded
	if killed {
		code, reason, phase = exitKilled, "Error", corev1.PodFailed
	}
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		started := metav1.Now()
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		f := false
		cs.Started, cs.Ready = &f, false
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: started, FinishedAt: now, ContainerID: cs.ContainerID}}
	}
	st.Phase = phase
	for i := range st.Conditions {
		if st.Conditions[i].Type == corev1.PodReadyToStartContainers {
			st.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	return st
}
