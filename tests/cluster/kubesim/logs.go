// The kubelet's log endpoint, simulated: the API server serves pods/log by
// proxying to the node's kubelet (k8s.io/kubernetes v1.34.4
// pkg/registry/core/pod/strategy.go LogLocation:
// https://<node address>:<status.daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>).
// The node address is the first of --kubelet-preferred-address-types
// (default Hostname, InternalDNS, InternalIP, ...; pkg/util/node/node.go
// GetPreferredNodeAddress) that the node reports: kubesim nodes report only
// InternalIP 127.0.0.1. Without --kubelet-certificate-authority the API server
// does not verify the kubelet's certificate (pkg/kubelet/client/kubelet_client.go
// transportConfig: no CA -> Insecure), so a self-signed one made at start does.
//
// What a container "printed": the lines of the pod annotation
// sim.fediops.test/log (one line per line of the value), revealed over the
// pod's run: line i of n appears once i/n of its run duration
// (sim.fediops.test/delay-seconds, else --job-duration) has passed since it
// started; all of them once the pod has ended. So a test makes a migration
// Job print its progress as a real one would.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

const annLog = annPrefix + "log"

// kubeletPort is the port of the log endpoint, reported in each node's status
// (daemonEndpoints.kubeletEndpoint.Port); 0 until startLogServer has run.
var kubeletPort int32

// startLogServer listens on 127.0.0.1 (a free port) with HTTPS and serves
// /containerLogs/{namespace}/{pod}/{container} until ctx ends.
func startLogServer(ctx context.Context, s *sim) error {
	cert, err := selfSignedCert()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	kubeletPort = int32(ln.Addr().(*net.TCPAddr).Port)
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/", func(w http.ResponseWriter, r *http.Request) { s.serveLog(w, r) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && err != http.ErrServerClosed {
			klog.Errorf("log endpoint: %v", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	klog.Infof("kubelet log endpoint on https://127.0.0.1:%d", kubeletPort)
	return nil
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "kubesim-kubelet"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * 365 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// serveLog answers as a kubelet does for a container's log: text/plain, the
// lines so far; tailLines and limitBytes are honoured, follow is not (the
// answer ends with what has been "printed" so far).
func (s *sim) serveLog(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		http.Error(w, "expected /containerLogs/{namespace}/{pod}/{container}", http.StatusBadRequest)
		return
	}
	pod, err := s.client.CoreV1().Pods(parts[0]).Get(r.Context(), parts[1], metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		http.Error(w, fmt.Sprintf("pod %s/%s not found", parts[0], parts[1]), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	found := false
	for _, c := range pod.Spec.Containers {
		found = found || c.Name == parts[2]
	}
	if !found {
		http.Error(w, fmt.Sprintf("container %s is not in pod %s/%s", parts[2], parts[0], parts[1]), http.StatusBadRequest)
		return
	}
	lines := s.printed(pod, time.Now())
	if n, err := strconv.Atoi(r.URL.Query().Get("tailLines")); err == nil && n >= 0 && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	text := ""
	if len(lines) > 0 {
		text = strings.Join(lines, "\n") + "\n"
	}
	if n, err := strconv.Atoi(r.URL.Query().Get("limitBytes")); err == nil && n >= 0 && n < len(text) {
		text = text[:n]
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(text))
}

// printed is what the pod's container has written by `now` (see the file comment).
func (s *sim) printed(pod *corev1.Pod, now time.Time) []string {
	value, ok := pod.Annotations[annLog]
	if !ok || value == "" {
		return nil
	}
	lines := strings.Split(strings.TrimRight(value, "\n"), "\n")
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return lines
	}
	if pod.Status.StartTime == nil {
		return nil
	}
	d := s.delay(pod, s.jobDuration)
	elapsed := now.Sub(pod.Status.StartTime.Time)
	shown := len(lines)
	if d > 0 && elapsed < d {
		shown = int(int64(len(lines))*int64(elapsed)/int64(d)) + 1
		if shown > len(lines) {
			shown = len(lines)
		}
	}
	return lines[:shown]
}
