// Package metrics holds keyhole's Prometheus collectors (served on the admin
// listener at /metrics, SPEC §6).
//
// Label values come only from configuration (proxy and rule names), status
// codes and fixed reason codes — never from what an agent sent, so a client
// cannot blow up cardinality or plant text in a label, and no secret or
// token can ever be one.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is one node's set of collectors.
type Metrics struct {
	Registry *prometheus.Registry

	Requests       *prometheus.CounterVec   // proxy, status, decision
	Latency        *prometheus.HistogramVec // proxy, status
	Denials        *prometheus.CounterVec   // reason
	UpstreamErrors *prometheus.CounterVec   // proxy, kind

	AuditQueue    prometheus.Gauge
	AuditCommit   prometheus.Histogram
	AuditRecords  prometheus.Counter
	AuditFailures prometheus.Counter
	AuditDropped  prometheus.Counter
	AuditLag      prometheus.Gauge

	SnapshotVersion prometheus.Gauge
	SnapshotReloads *prometheus.CounterVec // result
}

// New registers every collector on a fresh registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyhole_requests_total",
			Help: "Agent requests by proxy, status and decision."}, []string{"proxy", "status", "decision"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "keyhole_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response, by proxy and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"proxy", "status"}),
		Denials: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyhole_denials_total",
			Help: "Refused requests by reason code."}, []string{"reason"}),
		UpstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyhole_upstream_errors_total",
			Help: "Forwarded requests that failed at the upstream (unreachable, timeout)."}, []string{"proxy", "kind"}),
		AuditQueue: prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyhole_audit_queue_depth",
			Help: "Audit events waiting for the writer."}),
		AuditCommit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keyhole_audit_commit_seconds",
			Help:    "Duration of one audit batch commit.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}),
		AuditRecords: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyhole_audit_events_written_total",
			Help: "Audit events committed."}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyhole_audit_commit_failures_total",
			Help: "Audit batch commits that failed."}),
		AuditDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "keyhole_audit_events_dropped_total",
			Help: "Audit events given up on because the store kept failing and the bounded retry buffer was full; each is also logged."}),
		AuditLag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyhole_audit_lag_seconds",
			Help: "Age of the oldest audit event waiting to be committed."}),
		SnapshotVersion: prometheus.NewGauge(prometheus.GaugeOpts{Name: "keyhole_config_version",
			Help: "Configuration version of the snapshot this node serves."}),
		SnapshotReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keyhole_config_reloads_total",
			Help: "Snapshot rebuilds by result."}, []string{"result"}),
	}
	r.MustRegister(m.Requests, m.Latency, m.Denials, m.UpstreamErrors, m.AuditQueue, m.AuditCommit, m.AuditRecords,
		m.AuditFailures, m.AuditDropped, m.AuditLag, m.SnapshotVersion, m.SnapshotReloads,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
