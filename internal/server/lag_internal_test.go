package server

import (
	"slices"
	"testing"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/ingest"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/metrics"
)

// TestLagSamples: every existing tenant gets a series (0 when caught up),
// its partitions are added up, and topics of tenants that do not exist
// (shredded, unknown, not tenant topics) make no series.
func TestLagSamples(t *testing.T) {
	report := ingest.LagReport{Lagging: []kafka.PartitionLag{
		{Topic: "tenant.acme.events", Partition: 0, Lag: 3},
		{Topic: "tenant.acme.events", Partition: 2, Lag: 4},
		{Topic: "tenant.gone.events", Partition: 0, Lag: 9},
		{Topic: "tenant.made-up.events", Partition: 0, Lag: 5},
		{Topic: "vault.checkpoints", Partition: 0, Lag: 1},
	}}
	tenants := []events.TenantID{"acme", "beta", "gone"}
	exists := func(t string) bool { return t == "acme" || t == "beta" }
	got := lagSamples(report, tenants, exists)
	want := []metrics.Sample{{Labels: []string{"acme"}, Value: 7}, {Labels: []string{"beta"}, Value: 0}}
	if !slices.EqualFunc(got, want, func(a, b metrics.Sample) bool { return slices.Equal(a.Labels, b.Labels) && a.Value == b.Value }) {
		t.Errorf("lagSamples = %v, want %v", got, want)
	}
}
