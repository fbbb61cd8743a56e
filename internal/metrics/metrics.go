package metrics

import (
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of the vault's own.
const Namespace = "tenantvault"

// Other is the tenant label of every tenant Known does not know, and the
// route label of a request no route matched.
const Other = "other"

// Config configures a Registry.
type Config struct {
	// Known reports whether tenant exists (the vault's registry): only
	// those are labelled by their id. Nil: every tenant is Other.
	Known func(tenant string) bool
	// Version is the build's version for tenantvault_build_info; default
	// the main module's version from the build info, or "devel".
	Version string
}

// Registry is vaultd's Prometheus registry and the collectors it owns.
type Registry struct {
	reg   *prometheus.Registry
	known func(string) bool

	requestDuration *prometheus.HistogramVec
	batchDuration   prometheus.Histogram
	applied         *prometheus.CounterVec
	quarantined     *prometheus.CounterVec
}

// Buckets of the latency histograms, in seconds: 1ms to 10s.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New returns a registry with the Go runtime and process collectors,
// tenantvault_build_info, the request and ingest batch latency histograms
// and the per-tenant ingest counters.
func New(cfg Config) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), known: cfg.Known}
	if r.known == nil {
		r.known = func(string) bool { return false }
	}
	version, revision, goVersion := buildInfo(cfg.Version)
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "build_info",
			Help:        "The build of vaultd: always 1, labelled by version, revision and Go version.",
			ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
		}, func() float64 { return 1 }),
	)
	r.requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern (tenant reads among them) and status class.",
		Buckets: latencyBuckets,
	}, []string{"route", "code"})
	r.batchDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "ingest_batch_duration_seconds",
		Help:    "Time to apply one ingest batch (seal, store, audit), retries included.",
		Buckets: latencyBuckets,
	})
	r.applied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tenant_events_applied_total",
		Help: `Events applied to a tenant's store, by tenant ("other": a tenant that does not exist).`,
	}, []string{"tenant"})
	r.quarantined = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "tenant_events_quarantined_total",
		Help: `Records rejected into a tenant's quarantine, by tenant ("other": a tenant that does not exist).`,
	}, []string{"tenant"})
	r.reg.MustRegister(r.requestDuration, r.batchDuration, r.applied, r.quarantined)
	return r
}

// buildInfo is the version, VCS revision and Go version of the binary.
func buildInfo(version string) (string, string, string) {
	revision, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if version == "" && bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "devel"
	}
	return version, revision, goVersion
}

// Handler serves the registry in the Prometheus exposition formats.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Tenant is the label of tenant: its id when it exists, else Other.
func (r *Registry) Tenant(tenant string) string {
	if tenant != "" && r.known(tenant) {
		return tenant
	}
	return Other
}

// ObserveRequest records the duration of one HTTP request answered with
// status on route, the pattern that matched ("" when none did: Other).
func (r *Registry) ObserveRequest(route string, status int, d time.Duration) {
	if route == "" {
		route = Other
	}
	r.requestDuration.WithLabelValues(route, statusClass(status)).Observe(d.Seconds())
}

// statusClass is "2xx", "4xx", ... of status: a bounded label.
func statusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return string(rune('0'+status/100)) + "xx"
}

// ObserveBatch records the duration of one ingest batch.
func (r *Registry) ObserveBatch(d time.Duration) { r.batchDuration.Observe(d.Seconds()) }

// Ingested counts what one batch of tenant's did.
func (r *Registry) Ingested(tenant string, applied, quarantined int) {
	t := r.Tenant(tenant)
	if applied > 0 {
		r.applied.WithLabelValues(t).Add(float64(applied))
	}
	if quarantined > 0 {
		r.quarantined.WithLabelValues(t).Add(float64(quarantined))
	}
}

// Forget removes the per-tenant series of tenant (it was shredded).
func (r *Registry) Forget(tenant string) {
	r.applied.DeleteLabelValues(tenant)
	r.quarantined.DeleteLabelValues(tenant)
}

// CounterFunc registers a counter tenantvault_<name> whose value f reads
// (a counter another package keeps).
func (r *Registry) CounterFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

// GaugeFunc registers a gauge tenantvault_<name> whose value f reads.
func (r *Registry) GaugeFunc(name, help string, f func() float64) {
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

// Sample is one labelled value of a vector another package keeps: its
// label values in the order the vector's labels were named.
type Sample struct {
	Labels []string
	Value  float64
}

// CounterVecFunc registers a counter vector tenantvault_<name>{labels}
// whose samples f returns at each scrape. A label named "tenant" is
// bounded: a tenant that does not exist is counted as Other (samples that
// then share their labels are added up).
func (r *Registry) CounterVecFunc(name, help string, labels []string, f func() []Sample) {
	r.reg.MustRegister(&vecFunc{r: r, desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil),
		labels: labels, kind: prometheus.CounterValue, f: f})
}

// GaugeVecFunc is CounterVecFunc for a gauge.
func (r *Registry) GaugeVecFunc(name, help string, labels []string, f func() []Sample) {
	r.reg.MustRegister(&vecFunc{r: r, desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil),
		labels: labels, kind: prometheus.GaugeValue, f: f})
}

// vecFunc collects the samples of a func.
type vecFunc struct {
	r      *Registry
	desc   *prometheus.Desc
	labels []string
	kind   prometheus.ValueType
	f      func() []Sample
}

func (v *vecFunc) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

func (v *vecFunc) Collect(ch chan<- prometheus.Metric) {
	type key string
	sums := make(map[key]float64)
	vals := make(map[key][]string)
	var order []key
	for _, s := range v.f() {
		if len(s.Labels) != len(v.labels) {
			continue
		}
		ls := append([]string(nil), s.Labels...)
		for i, l := range v.labels {
			if l == "tenant" {
				ls[i] = v.r.Tenant(ls[i])
			}
		}
		k := key(joinLabels(ls))
		if _, ok := sums[k]; !ok {
			order = append(order, k)
			vals[k] = ls
		}
		sums[k] += s.Value
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(v.desc, v.kind, sums[k], vals[k]...)
	}
}

// joinLabels joins label values unambiguously.
func joinLabels(ls []string) string {
	var b []byte
	for _, l := range ls {
		b = append(b, byte(len(l)>>8), byte(len(l)))
		b = append(b, l...)
	}
	return string(b)
}
