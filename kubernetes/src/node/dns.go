//go:build ignore

// Command dns is the cluster DNS of a turtles Kubernetes cluster, in place
// of CoreDNS (which is not in Debian and cannot be pulled here): it
// watches the cluster's services and answers A queries for
// SERVICE.NAMESPACE.svc.DOMAIN with the service's cluster IP, or with
// its endpoints' addresses for a headless service; it forwards every
// other name to the resolver of the node (dnsPolicy Default).
//
//	dns [-listen :53] [-domain cluster.local] [-resolv /etc/resolv.conf]
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func main() {
	listen := flag.String("listen", ":53", "address to answer on, UDP and TCP")
	domain := flag.String("domain", "cluster.local", "the cluster's domain")
	resolv := flag.String("resolv", "/etc/resolv.conf", "where the upstream resolvers are")
	flag.Parse()
	cfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatalf("dns: %v", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatalf("dns: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f := informers.NewSharedInformerFactory(client, 10*time.Minute)
	svcs := f.Core().V1().Services().Informer()
	slices := f.Discovery().V1().EndpointSlices().Informer()
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcs.HasSynced, slices.HasSynced) {
		log.Fatal("dns: the service cache did not sync")
	}
	up, err := dns.ClientConfigFromFile(*resolv)
	if err != nil {
		log.Printf("dns: no upstream resolvers (%v): names outside the cluster fail", err)
		up = &dns.ClientConfig{}
	}
	h := &handler{zone: "svc." + dns.Fqdn(*domain), svcs: svcs.GetIndexer(), slices: slices.GetIndexer(), upstream: up}
	var wg sync.WaitGroup
	for _, network := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *listen, Net: network, Handler: h}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ListenAndServe(); err != nil {
				log.Fatalf("dns: %s: %v", network, err)
			}
		}()
		go func() { <-ctx.Done(); srv.Shutdown() }()
	}
	log.Printf("dns: answering for %s on %s", h.zone, *listen)
	wg.Wait()
}

type handler struct {
	zone     string
	svcs     cache.Indexer
	slices   cache.Indexer
	upstream *dns.ClientConfig
}

func (h *handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(h.zone, name) {
		h.forward(w, r)
		return
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	labels := dns.SplitDomainName(strings.TrimSuffix(name, "."+h.zone))
	if name == h.zone || len(labels) != 2 {
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
		return
	}
	svc, ns := labels[0], labels[1]
	ips, ok := h.lookup(ns, svc)
	if !ok {
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
		return
	}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		for _, ip := range ips {
			if ip4 := ip.To4(); ip4 != nil {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: ip4})
			}
		}
	}
	w.WriteMsg(m)
}

// lookup returns the addresses of service ns/name: its cluster IP, or
// for a headless service its ready endpoints.
func (h *handler) lookup(ns, name string) ([]net.IP, bool) {
	obj, ok, err := h.svcs.GetByKey(ns + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	s := obj.(*corev1.Service)
	if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
		return []net.IP{net.ParseIP(s.Spec.ClusterIP)}, true
	}
	var ips []net.IP
	for _, o := range h.slices.List() {
		es := o.(*discoveryv1.EndpointSlice)
		if es.Namespace != ns || es.Labels[discoveryv1.LabelServiceName] != name {
			continue
		}
		for _, e := range es.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				if ip := net.ParseIP(a); ip != nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips, true
}

// forward asks the upstream resolvers in turn and relays the first
// answer; SERVFAIL if none answers.
func (h *handler) forward(w dns.ResponseWriter, r *dns.Msg) {
	c := &dns.Client{Timeout: 2 * time.Second}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		c.Net = "tcp"
	}
	for _, s := range h.upstream.Servers {
		in, _, err := c.Exchange(r, net.JoinHostPort(s, h.upstream.Port))
		if err == nil {
			w.WriteMsg(in)
			return
		}
	}
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeServerFailure)
	w.WriteMsg(m)
}
