// Command vaultbench is tenantvault's load command. It starts a vault on
// its embedded defaults in a temporary directory, creates M tenants,
// publishes N CloudEvents across them with kafka-go, each tenant through a
// publisher of its own that logs in with the tenant's producer credential
// (SASL/SCRAM, the embedded broker's default), and measures end-to-end
// ingest: from the first publish to the last event committed to its
// tenant's store (then checks over the HTTP API that every event is
// queryable). In the same run it measures the same vault with
// unauthenticated Kafka (no SASL, no ACLs), which tells what SASL/SCRAM and
// ACLs cost, and writes the same records straight into Badger, with the
// vault's store options, without Kafka or encryption: the baseline. It
// also measures two peers on the same records, each with one topic and one
// consumer for every tenant: a naive shared store (one Badger DB,
// tenant-prefixed keys, no crypto) and PostgreSQL with row-level security
// (when the Debian postgresql binaries are installed). It prints the
// rates, their ratios, and the peak RSS of the vault phase. -reads
// measures the vault's HTTP reads against a bare net/http handler, and
// -tenants-idle what N idle tenants cost.
//
//	go run ./cmd/vaultbench -events 200000 -tenants 100 -payload 256
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sync/errgroup"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
	"github.com/tenantvault/tenantvault/internal/server"
	"github.com/tenantvault/tenantvault/projections"
)

type config struct {
	events, tenants, payload, streams, publishers, chunk int
	runs                                                 int
	brokers                                              []string // external cluster; empty: embedded brokers
	dir                                                  string
	skipBaseline, skipTransport, skipNoSASL              bool
	skipKafkaGo                                          bool
	ingestConsumer                                       string // the vault phases' --ingest-consumer
	skipCheckpoints                                      bool
	checkpointTopic                                      string // the vault phases' --checkpoint-topic ("" its default)
	idleProfile                                          string // CPU profile of the idle window
	skipNaive, skipPG                                    bool
	out, memprofile, cpuprofile                          string
	// reads runs the read phase (-reads) for readSeconds against the vault
	// and as long against a bare net/http handler.
	reads       bool
	readSeconds float64
	// tenantsIdle (-tenants-idle) is how many tenants the idle phase
	// creates (0: no idle phase); it measures CPU over idleSeconds, after
	// idleSettle (0: 2s) of quiet.
	tenantsIdle int
	idleSeconds float64
	idleSettle  time.Duration
}

func main() {
	var c config
	flag.IntVar(&c.events, "events", 200000, "events to publish in all")
	flag.IntVar(&c.tenants, "tenants", 100, "tenants to spread them over")
	flag.IntVar(&c.payload, "payload", 256, "bytes of each event's data")
	flag.IntVar(&c.streams, "streams", 100, "streams per tenant")
	flag.IntVar(&c.publishers, "publishers", 4, "concurrent publishers")
	flag.IntVar(&c.chunk, "chunk", 1000, "records per publish call")
	brokerList := flag.String("brokers", "", "bootstrap brokers host:port,... of an external Kafka cluster for the vault and the Kafka phases (default: an embedded broker per phase); each phase uses topics of its own and deletes them afterwards")
	flag.IntVar(&c.runs, "runs", 1, "run every phase this many times, one run after the other, and report the medians (RSS figures of later runs include memory the process kept from earlier ones)")
	flag.StringVar(&c.dir, "dir", "", "work directory (default: a temporary one, removed after)")
	flag.BoolVar(&c.skipBaseline, "skip-baseline", false, "do not run the Badger baseline")
	flag.BoolVar(&c.skipTransport, "skip-transport", false, "do not run the Kafka-only measurement")
	flag.DurationVar(&c.idleSettle, "idle-settle", 0, "how long -tenants-idle waits after the last create before it measures (default 2s; over a minute lets idle stores close)")
	flag.StringVar(&c.idleProfile, "idle-cpuprofile", "", "write a CPU profile of the idle window of -tenants-idle to this file")
	flag.BoolVar(&c.skipCheckpoints, "skip-checkpoints", false, "do not run the vault without checkpoint publishing (--checkpoint-topic=-) for comparison")
	flag.BoolVar(&c.skipKafkaGo, "skip-kafkago", false, "do not run the vault with the earlier consumer (--ingest-consumer=kafka-go: a consumer group per tenant topic) for comparison")
	flag.BoolVar(&c.skipNoSASL, "skip-nosasl", false, "do not run the vault without Kafka authentication (--kafka-auth=none; only run with the embedded brokers)")
	flag.BoolVar(&c.skipNaive, "skip-naive", false, "do not run the naive shared store (one topic, one consumer, one Badger DB with tenant-prefixed keys)")
	flag.BoolVar(&c.skipPG, "skip-pg", false, "do not run PostgreSQL with row-level security (one topic, one consumer; skipped anyway when /usr/lib/postgresql/*/bin is not installed)")
	flag.BoolVar(&c.reads, "reads", false, "after the vault phase's ingest, measure GETs of random streams' state over HTTP (16 connections) against a bare net/http handler")
	flag.Float64Var(&c.readSeconds, "read-seconds", 10, "seconds of reads against the vault, and as many against the bare handler (with -reads)")
	flag.IntVar(&c.tenantsIdle, "tenants-idle", 0, "before the runs, start a vault of its own (embedded broker), create this many tenants and measure the idle process's CPU and RSS (0: off)")
	flag.Float64Var(&c.idleSeconds, "idle-seconds", 10, "seconds over which -tenants-idle measures idle CPU")
	flag.StringVar(&c.out, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&c.memprofile, "memprofile", "", "write a heap profile to this file when the last event is committed")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the measured window (first publish to last event committed) to this file")
	flag.Parse()
	for b := range strings.SplitSeq(*brokerList, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	if err := run(context.Background(), c, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "vaultbench:", err)
		os.Exit(1)
	}
}

// Phase is a measured run of the same records.
type Phase struct {
	Seconds, EventsPerSec, CPUSeconds float64
	Ratio                             float64 `json:",omitempty"` // events/s against the baseline's
	// PublishSeconds and PeakRSSMiB are a vault phase's, as in Results.
	PublishSeconds float64 `json:",omitempty"`
	// Batches are the store transactions of the phase: the vault's ingest
	// batches, the naive store's Badger commits, PostgreSQL transactions.
	Batches    int64   `json:",omitempty"`
	PeakRSSMiB float64 `json:",omitempty"`
	// ServerCPUSeconds is the CPU of a server process outside vaultbench
	// (PostgreSQL's, its backends included) over the window; CPUSeconds is
	// vaultbench's own.
	ServerCPUSeconds float64 `json:",omitempty"`
	// Server names the server of a peer (PostgreSQL's version).
	Server string `json:",omitempty"`
}

// Results are one run's figures.
type Results struct {
	Events, Tenants, PayloadBytes int
	VaultSeconds                  float64
	VaultEventsPerSec             float64
	BaselineSeconds               float64 `json:",omitempty"`
	BaselineEventsPerSec          float64 `json:",omitempty"`
	Ratio                         float64 `json:",omitempty"`
	PeakRSSMiB                    float64
	RSSBeforeMiB                  float64 // RSS when publishing starts: the vault idle with its stores open, plus the prepared messages
	PublishSeconds                float64
	VaultCPUSeconds               float64 // user+system CPU of the process over the vault's window
	BaselineCPUSeconds            float64 `json:",omitempty"`
	Batches                       int64   // store transactions of ingest batches
	// VaultProducers is how the vault phase's publishers logged in to the
	// brokers: "SASL/<mechanism> per tenant" with each tenant's producer
	// credential, or "anonymous" when the vault gave none (an external
	// cluster without SASL).
	VaultProducers string `json:",omitempty"`
	// VaultNoSASL: the same vault on the same records with the embedded
	// broker unauthenticated (--kafka-auth=none: no SASL, no ACLs, one
	// anonymous publisher per tenant); only with the embedded brokers.
	VaultNoSASL *Phase `json:",omitempty"`
	// SASLRatio is the vault's events/s against VaultNoSASL's: what
	// SASL/SCRAM and ACLs leave of the unauthenticated throughput.
	SASLRatio float64 `json:",omitempty"`
	// VaultKafkaGo: the same vault consuming with the earlier design
	// (--ingest-consumer=kafka-go, a consumer group per tenant topic);
	// ConsumerRatio is the vault's events/s against it.
	VaultKafkaGo  *Phase  `json:",omitempty"`
	ConsumerRatio float64 `json:",omitempty"`
	// VaultNoCheckpoints: the same vault without publishing its audit
	// checkpoints (--checkpoint-topic=-). CheckpointRatio is the vault's
	// events/s against it: the cost of publishing checkpoints.
	VaultNoCheckpoints *Phase  `json:",omitempty"`
	CheckpointRatio    float64 `json:",omitempty"`
	// KafkaOnly: the same records through the same broker, Publisher and
	// Subscriber with no vault behind them, each message acked as it
	// arrives: what Kafka alone costs on this machine.
	KafkaOnly *Phase `json:",omitempty"`
	// KafkaBadger: the same again, each topic's messages written in
	// batches to its tenant's Badger DB as the baseline writes them (no
	// decoding, hashing, sealing, merging or audit) and acked after the
	// commit: an upper bound for any vault built on these components.
	KafkaBadger *Phase `json:",omitempty"`
	// CeilingRatio is the vault's events/s against KafkaBadger's: how close
	// the vault comes to the ceiling its components set.
	CeilingRatio float64 `json:",omitempty"`
	// Naive: the naive shared store on the same records: one topic for
	// all tenants, one consumer, one Badger DB with tenant-prefixed keys,
	// no crypto, a synced write batch per consumed batch with the consumer
	// offsets in it, acked after the commit.
	Naive *Phase `json:",omitempty"`
	// NaiveRatio is the vault's events/s against Naive's.
	NaiveRatio float64 `json:",omitempty"`
	// PostgresRLS: PostgreSQL with row-level security on the same records:
	// one topic, one consumer, one INSERT ... SELECT per tenant group of
	// each consumed batch, each in a transaction of its own,
	// synchronous_commit on. PostgresRLSSkipped says why it did not run
	// when PostgreSQL is not installed.
	PostgresRLS        *Phase  `json:",omitempty"`
	PostgresRLSSkipped string  `json:",omitempty"`
	PostgresRLSRatio   float64 `json:",omitempty"` // the vault's events/s against PostgresRLS's
	// Reads is the read phase's (-reads), run on the vault phase's vault.
	Reads *Reads `json:",omitempty"`
}

// Report is what -json writes: every run, the medians of the ratios, and
// the idle phase's figures.
type Report struct {
	Runs                                                    []Results
	MedianRatio, MedianKafkaBadgerRatio, MedianCeilingRatio float64 `json:",omitempty"`
	MedianSASLRatio                                         float64 `json:",omitempty"`
	MedianConsumerRatio                                     float64 `json:",omitempty"`
	MedianCheckpointRatio                                   float64 `json:",omitempty"`
	MedianNaiveRatio, MedianPostgresRLSRatio                float64 `json:",omitempty"`
	MedianReadsRatio                                        float64 `json:",omitempty"` // vault reads/s against the bare handler's
	Idle                                                    *Idle   `json:",omitempty"`
}

func run(ctx context.Context, c config, w io.Writer) error {
	if c.events < c.tenants || c.tenants < 1 || c.payload < 16 || c.runs < 1 {
		return errors.New("want -events >= -tenants >= 1, -payload >= 16 and -runs >= 1")
	}
	if (c.reads && c.readSeconds <= 0) || (c.tenantsIdle > 0 && c.idleSeconds <= 0) || c.tenantsIdle < 0 {
		return errors.New("want -read-seconds > 0 with -reads, -tenants-idle >= 0, and -idle-seconds > 0 with -tenants-idle")
	}
	dir := c.dir
	if dir == "" {
		d, err := os.MkdirTemp("", "vaultbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	perTenant := c.events / c.tenants
	fmt.Fprintf(w, "vaultbench: %d events, %d tenants, %d streams/tenant, %d-byte data\n", perTenant*c.tenants, c.tenants, c.streams, c.payload)

	var rep Report
	// The idle phase runs first, so that its RSS holds no memory the
	// process kept from the load phases.
	if c.tenantsIdle > 0 {
		idle, err := benchIdle(ctx, c, filepath.Join(dir, "idle"))
		if err != nil {
			return fmt.Errorf("idle: %w", err)
		}
		if c.dir == "" {
			os.RemoveAll(filepath.Join(dir, "idle"))
		}
		rep.Idle = idle
		fmt.Fprintf(w, "idle: %d tenants, create p50 %.1f ms p99 %.1f ms (max %.1f ms), idle CPU %.2f%% of a core over %gs, RSS %.0f MiB (peak %.0f MiB)\n",
			idle.Tenants, idle.CreateP50Ms, idle.CreateP99Ms, idle.CreateMaxMs, idle.IdleCPUPercent, c.idleSeconds, idle.RSSMiB, idle.PeakRSSMiB)
	}
	for i := range c.runs {
		if c.runs > 1 {
			fmt.Fprintf(w, "\nrun %d of %d\n", i+1, c.runs)
		}
		runDir := filepath.Join(dir, fmt.Sprintf("run-%d", i+1))
		res, err := runOnce(ctx, c, runDir, i+1, perTenant, w)
		if err != nil {
			return err
		}
		if c.dir == "" {
			os.RemoveAll(runDir) // the next run's disk, and its page cache, start clean
		}
		rep.Runs = append(rep.Runs, res)
	}
	rep.medians(c.runs, w)
	if c.out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		return os.WriteFile(c.out, append(b, '\n'), 0o644)
	}
	return nil
}

// medians fills in the report's median ratios over its runs, and prints
// them when there was more than one run.
func (r *Report) medians(runs int, w io.Writer) {
	medians := []struct {
		name string
		get  func(Results) float64
		into *float64
	}{
		{"vault/baseline", func(res Results) float64 { return res.Ratio }, &r.MedianRatio},
		{"kafka->badger/baseline", func(res Results) float64 {
			if res.KafkaBadger == nil {
				return 0
			}
			return res.KafkaBadger.Ratio
		}, &r.MedianKafkaBadgerRatio},
		{"vault/(kafka->badger)", func(res Results) float64 { return res.CeilingRatio }, &r.MedianCeilingRatio},
		{"vault/vault-no-sasl", func(res Results) float64 { return res.SASLRatio }, &r.MedianSASLRatio},
		{"vault/vault-kafka-go", func(res Results) float64 { return res.ConsumerRatio }, &r.MedianConsumerRatio},
		{"vault/vault-no-checkpoints", func(res Results) float64 { return res.CheckpointRatio }, &r.MedianCheckpointRatio},
		{"vault/naive", func(res Results) float64 { return res.NaiveRatio }, &r.MedianNaiveRatio},
		{"vault/postgres-rls", func(res Results) float64 { return res.PostgresRLSRatio }, &r.MedianPostgresRLSRatio},
		{"vault-reads/bare-http", func(res Results) float64 {
			if res.Reads == nil {
				return 0
			}
			return res.Reads.Ratio
		}, &r.MedianReadsRatio},
	}
	for _, m := range medians {
		vals := make([]float64, 0, len(r.Runs))
		for _, run := range r.Runs {
			if v := m.get(run); v > 0 {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		slices.Sort(vals)
		*m.into = vals[len(vals)/2]
		if len(vals)%2 == 0 {
			*m.into = (vals[len(vals)/2-1] + vals[len(vals)/2]) / 2
		}
		if runs > 1 {
			fmt.Fprintf(w, "median ratio %s over %d runs: %.2f (%.2f-%.2f)\n", m.name, len(vals), *m.into, vals[0], vals[len(vals)-1])
		}
	}
}

// runID tells this process's tenants from others' on an external cluster.
var runID = fmt.Sprintf("%06x", time.Now().UnixNano()&0xffffff)

// phaseTenants names the tenants of one phase of one run: bench-0000, ...
// on the embedded brokers, which each phase starts afresh; on an external
// cluster, names of their own (b<id>-<run><phase>-0000, ...), so that no
// phase reads the topics of another.
func phaseTenants(c config, run int, phase string) []events.TenantID {
	tenants := make([]events.TenantID, c.tenants)
	for i := range tenants {
		if len(c.brokers) == 0 {
			tenants[i] = events.TenantID(fmt.Sprintf("bench-%04d", i))
		} else {
			tenants[i] = events.TenantID(fmt.Sprintf("b%s-%d%s-%04d", runID, run, phase, i))
		}
	}
	return tenants
}

// deleteTopics removes the tenants' topics from an external cluster.
func deleteTopics(ctx context.Context, c config, tenants []events.TenantID) error {
	if len(c.brokers) == 0 {
		return nil
	}
	admin, err := kafka.NewAdmin(c.brokers, kafka.Auth{})
	if err != nil {
		return err
	}
	defer admin.Close()
	var errs []error
	for _, t := range tenants {
		errs = append(errs, admin.DeleteTopic(ctx, events.TopicFor(t)))
	}
	return errors.Join(errs...)
}

// runOnce runs every phase once, in dir.
func runOnce(ctx context.Context, c config, dir string, run, perTenant int, w io.Writer) (Results, error) {
	r := &benchRun{c: c, dir: dir, run: run, perTenant: perTenant, w: w,
		res: Results{Events: perTenant * c.tenants, Tenants: c.tenants, PayloadBytes: c.payload}}
	if err := r.comparedPhases(ctx); err != nil {
		return r.res, err
	}
	if !c.skipBaseline {
		if err := benchBaseline(c, filepath.Join(dir, "baseline"), phaseTenants(c, run, "d"), perTenant, &r.res); err != nil {
			return r.res, err
		}
		r.res.Ratio = r.res.VaultEventsPerSec / r.res.BaselineEventsPerSec
		fmt.Fprintf(w, "badger baseline:   %8.0f events/s  (%.2fs, %.2f CPU-s)\n", r.res.BaselineEventsPerSec, r.res.BaselineSeconds, r.res.BaselineCPUSeconds)
	}
	if !c.skipTransport {
		if err := r.transportPhases(ctx); err != nil {
			return r.res, err
		}
	}
	r.ratios()
	return r.res, nil
}

// benchRun is one run of every phase, gathering their figures in res.
type benchRun struct {
	c              config
	dir            string
	run, perTenant int
	w              io.Writer
	res            Results
}

// comparedPhases runs the vault phases and the peers, back to back, in an
// order that is reversed every other run: vault, vault no-SASL, vault
// kafka-go, naive, postgres-rls in odd runs, the reverse in even ones.
// Over a pair of runs each of them holds, on average, the same place in
// the sequence, so that none always gets the fresher (or the warmer)
// machine, and a drift that is linear over the pair favours none of them.
// With an odd -runs the vault goes first once more. The baseline and the
// Kafka-only phases follow, in runOnce.
func (r *benchRun) comparedPhases(ctx context.Context) error {
	phases := []func(context.Context) error{r.vaultPhase}
	if len(r.c.brokers) == 0 && !r.c.skipNoSASL {
		phases = append(phases, r.noSASLPhase)
	}
	if !r.c.skipKafkaGo {
		phases = append(phases, r.kafkaGoPhase)
	}
	if !r.c.skipCheckpoints {
		phases = append(phases, r.noCheckpointsPhase)
	}
	if !r.c.skipNaive {
		phases = append(phases, r.naivePhase)
	}
	if !r.c.skipPG {
		phases = append(phases, r.pgPhase)
	}
	if r.run%2 == 0 {
		slices.Reverse(phases)
	}
	for _, ph := range phases {
		if err := ph(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *benchRun) vaultPhase(ctx context.Context) error {
	tenants := phaseTenants(r.c, r.run, "v")
	err := benchVault(ctx, r.c, filepath.Join(r.dir, "vault"), "scram", tenants, r.perTenant, &r.res)
	if err = errors.Join(err, deleteTopics(ctx, r.c, tenants)); err != nil {
		return err
	}
	res := &r.res
	fmt.Fprintf(r.w, "vault end-to-end:  %8.0f events/s  (%.2fs, %.2f CPU-s; publish done at %.2fs; %d batches; RSS %.0f MiB at start, peak %.0f MiB; producers %s)\n",
		res.VaultEventsPerSec, res.VaultSeconds, res.VaultCPUSeconds, res.PublishSeconds, res.Batches, res.RSSBeforeMiB, res.PeakRSSMiB, res.VaultProducers)
	if rd := res.Reads; rd != nil {
		for _, l := range []struct {
			name string
			s    ReadStats
		}{{"vault reads:", rd.Vault}, {"bare-http reads:", rd.BareHTTP}} {
			fmt.Fprintf(r.w, "%-18s %8.0f reads/s   (p50 %.2f ms, p99 %.2f ms; %d reads in %.2fs over %d connections, %d-byte answers)\n",
				l.name, l.s.ReadsPerSec, l.s.P50Ms, l.s.P99Ms, l.s.Reads, l.s.Seconds, rd.Connections, l.s.BodyBytes)
		}
	}
	return nil
}

// variantPhase runs the vault once more in a data dir of its own, changed
// by vary, without the profiles or the reads (they are the vault
// phase's), and returns its figures as a Phase.
func (r *benchRun) variantPhase(ctx context.Context, name, subdir, tag, auth string, vary func(*config)) (*Phase, Results, error) {
	nc := r.c
	nc.cpuprofile, nc.memprofile = "", ""
	nc.reads = false
	if vary != nil {
		vary(&nc)
	}
	var v Results
	tenants := phaseTenants(r.c, r.run, tag)
	err := benchVault(ctx, nc, filepath.Join(r.dir, subdir), auth, tenants, r.perTenant, &v)
	if err = errors.Join(err, deleteTopics(ctx, r.c, tenants)); err != nil {
		return nil, v, fmt.Errorf("%s: %w", name, err)
	}
	return &Phase{Seconds: v.VaultSeconds, EventsPerSec: v.VaultEventsPerSec, CPUSeconds: v.VaultCPUSeconds,
		PublishSeconds: v.PublishSeconds, Batches: v.Batches, PeakRSSMiB: v.PeakRSSMiB}, v, nil
}

// noSASLPhase runs the vault with an unauthenticated embedded broker.
func (r *benchRun) noSASLPhase(ctx context.Context) error {
	p, ns, err := r.variantPhase(ctx, "vault no-SASL", "vault-nosasl", "n", "none", nil)
	if err != nil {
		return err
	}
	r.res.VaultNoSASL = p
	fmt.Fprintf(r.w, "%-18s %8.0f events/s  (%.2fs, %.2f CPU-s; publish done at %.2fs; %d batches; RSS %.0f MiB at start, peak %.0f MiB; producers %s)\n",
		"vault no-SASL:", ns.VaultEventsPerSec, ns.VaultSeconds, ns.VaultCPUSeconds, ns.PublishSeconds, ns.Batches, ns.RSSBeforeMiB, ns.PeakRSSMiB, ns.VaultProducers)
	return nil
}

// noCheckpointsPhase runs the vault without publishing its checkpoints.
func (r *benchRun) noCheckpointsPhase(ctx context.Context) error {
	p, nc, err := r.variantPhase(ctx, "vault no-checkpoints", "vault-nocheckpoints", "c", "scram", func(c *config) { c.checkpointTopic = "-" })
	if err != nil {
		return err
	}
	r.res.VaultNoCheckpoints = p
	fmt.Fprintf(r.w, "%-18s %8.0f events/s  (%.2fs, %.2f CPU-s; publish done at %.2fs; %d batches; RSS %.0f MiB at start, peak %.0f MiB; --checkpoint-topic=-)\n",
		"vault no-ckpt:", nc.VaultEventsPerSec, nc.VaultSeconds, nc.VaultCPUSeconds, nc.PublishSeconds, nc.Batches, nc.RSSBeforeMiB, nc.PeakRSSMiB)
	return nil
}

// kafkaGoPhase runs the vault with the earlier consumer.
func (r *benchRun) kafkaGoPhase(ctx context.Context) error {
	p, kg, err := r.variantPhase(ctx, "vault kafka-go", "vault-kafkago", "g", "scram", func(c *config) { c.ingestConsumer = "kafka-go" })
	if err != nil {
		return err
	}
	r.res.VaultKafkaGo = p
	fmt.Fprintf(r.w, "%-18s %8.0f events/s  (%.2fs, %.2f CPU-s; publish done at %.2fs; %d batches; RSS %.0f MiB at start, peak %.0f MiB; a consumer group per topic)\n",
		"vault kafka-go:", kg.VaultEventsPerSec, kg.VaultSeconds, kg.VaultCPUSeconds, kg.PublishSeconds, kg.Batches, kg.RSSBeforeMiB, kg.PeakRSSMiB)
	return nil
}

func (r *benchRun) naivePhase(ctx context.Context) error {
	p, err := benchNaive(ctx, r.c, filepath.Join(r.dir, "naive"), sharedTopic(r.c, r.run, "a"), phaseTenants(r.c, r.run, "a"), r.perTenant)
	if err != nil {
		return fmt.Errorf("naive: %w", err)
	}
	r.res.Naive = p
	fmt.Fprintf(r.w, "%-18s %8.0f events/s  (%.2fs, %.2f CPU-s; %d Badger commits; one topic, one consumer, one Badger DB)\n",
		"naive:", p.EventsPerSec, p.Seconds, p.CPUSeconds, p.Batches)
	return nil
}

func (r *benchRun) pgPhase(ctx context.Context) error {
	p, skipped, err := benchPostgresRLS(ctx, r.c, filepath.Join(r.dir, "postgres-rls"), sharedTopic(r.c, r.run, "p"), phaseTenants(r.c, r.run, "p"), r.perTenant)
	if err != nil {
		return fmt.Errorf("postgres-rls: %w", err)
	}
	if skipped != "" {
		r.res.PostgresRLSSkipped = skipped
		fmt.Fprintf(r.w, "postgres-rls: skipped (%s)\n", skipped)
		return nil
	}
	r.res.PostgresRLS = p
	fmt.Fprintf(r.w, "%-18s %8.0f events/s  (%.2fs, %.2f CPU-s + %.2f CPU-s of the server; %d transactions; one topic, one consumer; %s)\n",
		"postgres-rls:", p.EventsPerSec, p.Seconds, p.CPUSeconds, p.ServerCPUSeconds, p.Batches, p.Server)
	return nil
}

// transportPhases measures Kafka alone and Kafka into Badger.
func (r *benchRun) transportPhases(ctx context.Context) error {
	for _, ph := range []struct {
		name, tag string
		badger    bool
		into      **Phase
	}{{"kafka only", "k", false, &r.res.KafkaOnly}, {"kafka -> badger", "b", true, &r.res.KafkaBadger}} {
		tenants := phaseTenants(r.c, r.run, ph.tag)
		p, err := benchTransport(ctx, r.c, filepath.Join(r.dir, strings.ReplaceAll(ph.name, " ", "")), tenants, r.perTenant, ph.badger)
		if err = errors.Join(err, deleteTopics(ctx, r.c, tenants)); err != nil {
			return fmt.Errorf("%s: %w", ph.name, err)
		}
		*ph.into = p
		fmt.Fprintf(r.w, "%-18s %8.0f events/s  (%.2fs, %.2f CPU-s)\n", ph.name+":", p.EventsPerSec, p.Seconds, p.CPUSeconds)
	}
	return nil
}

// ratios fills in and prints the ratios between the phases of this run.
func (r *benchRun) ratios() {
	res, w := &r.res, r.w
	if !r.c.skipBaseline {
		fmt.Fprintf(w, "ratio vault/baseline: %.2f\n", res.Ratio)
		for _, p := range []struct {
			name string
			p    *Phase
		}{{"vault-no-sasl", res.VaultNoSASL}, {"naive", res.Naive}, {"postgres-rls", res.PostgresRLS}, {"kafka-only", res.KafkaOnly}, {"kafka->badger", res.KafkaBadger}} {
			if p.p != nil {
				p.p.Ratio = p.p.EventsPerSec / res.BaselineEventsPerSec
				fmt.Fprintf(w, "ratio %s/baseline: %.2f\n", p.name, p.p.Ratio)
			}
		}
	}
	if res.KafkaBadger != nil {
		res.CeilingRatio = res.VaultEventsPerSec / res.KafkaBadger.EventsPerSec
		fmt.Fprintf(w, "ratio vault/(kafka->badger): %.2f\n", res.CeilingRatio)
	}
	// The vault against each of its peers measured in this run.
	for _, peer := range []struct {
		name  string
		phase *Phase
		ratio *float64
	}{
		{"vault-kafka-go", res.VaultKafkaGo, &res.ConsumerRatio},
		{"vault-no-checkpoints", res.VaultNoCheckpoints, &res.CheckpointRatio},
		{"vault-no-sasl", res.VaultNoSASL, &res.SASLRatio},
		{"naive", res.Naive, &res.NaiveRatio},
		{"postgres-rls", res.PostgresRLS, &res.PostgresRLSRatio},
	} {
		if peer.phase != nil {
			*peer.ratio = res.VaultEventsPerSec / peer.phase.EventsPerSec
			fmt.Fprintf(w, "ratio vault/%s: %.2f\n", peer.name, *peer.ratio)
		}
	}
	if res.Reads != nil {
		fmt.Fprintf(w, "ratio vault-reads/bare-http: %.2f\n", res.Reads.Ratio)
	}
}

// record returns tenant t's j-th event, structured mode, with its stream id.
func record(t events.TenantID, j, streams, payload int) (string, []byte) {
	stream := fmt.Sprintf("s-%d", j%streams)
	e := events.Event{ID: fmt.Sprintf("%s-%d", t, j), Source: "vaultbench", SpecVersion: events.SpecVersion, Type: "bench.recorded", Subject: stream}
	// {"n":<j>,"pad":"xxx"} padded to exactly payload bytes.
	head := `{"n":` + strconv.Itoa(j) + `,"pad":"`
	pad := max(payload-len(head)-2, 0)
	e.Data = json.RawMessage(head + strings.Repeat("x", pad) + `"}`)
	b, err := e.Encode()
	if err != nil {
		panic(err)
	}
	return stream, b
}

// benchVault measures the vault end to end in dir, its embedded broker's
// authentication kafkaAuth ("scram" or "none", as server.Config.KafkaAuth):
// it creates tenants over the HTTP API, opens one publisher per tenant
// that logs in with the producer credential the create answer carries
// (anonymous without one), publishes the prepared records, and waits for
// the last event to be committed; then checks that every event is
// queryable. The publishers are made before the clock starts and closed
// after it stops; they connect (and authenticate) at their first publish,
// inside the window, as a producer that starts does.
func benchVault(ctx context.Context, c config, dir, kafkaAuth string, tenants []events.TenantID, perTenant int, res *Results) error {
	srv, stop, err := startServer(ctx, server.Config{DataDir: dir, Brokers: c.brokers, KafkaAuth: kafkaAuth, IngestConsumer: c.ingestConsumer, CheckpointTopic: c.checkpointTopic})
	if err != nil {
		return err
	}
	defer stop()
	base := "http://" + srv.HTTPAddr()
	var pubs []*kafka.Publisher
	defer func() {
		for _, p := range pubs {
			if p != nil {
				p.Close() // harmless after the close below
			}
		}
	}()
	tokens, pubs, err := createBenchTenants(ctx, c, srv, kafkaAuth, tenants, res)
	if err != nil {
		return err
	}

	batches := prepare(c, tenants, perTenant)

	resetPeakRSS()
	res.RSSBeforeMiB = rssMiB("VmRSS:")
	stopProfile, err := startCPUProfile(c.cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	total := int64(perTenant * len(tenants))
	stats := srv.Vault().Stats()
	cpu0 := cpuSeconds()
	start := time.Now()
	if err := publishAll(ctx, c, pubs, tenants, batches); err != nil {
		return err
	}
	batches = nil
	res.PublishSeconds = time.Since(start).Seconds()
	deadline := time.Now().Add(10 * time.Minute)
	for stats.EventsApplied.Load() < total {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d events applied after 10 minutes", stats.EventsApplied.Load(), total)
		}
		time.Sleep(2 * time.Millisecond)
	}
	res.VaultSeconds = time.Since(start).Seconds()
	res.VaultEventsPerSec = float64(total) / res.VaultSeconds
	res.VaultCPUSeconds = cpuSeconds() - cpu0
	stopProfile()
	res.PeakRSSMiB = rssMiB("VmHWM:")
	var errs []error
	for _, p := range pubs {
		errs = append(errs, p.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if c.memprofile != "" {
		f, err := os.Create(c.memprofile)
		if err != nil {
			return err
		}
		err = pprof.WriteHeapProfile(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	res.Batches = stats.Batches.Load()
	if err := checkQueryable(ctx, base, tenants, tokens, perTenant); err != nil {
		return err
	}
	if c.reads {
		r, err := benchReads(ctx, c, base, tenants, tokens, min(c.streams, perTenant))
		if err != nil {
			return fmt.Errorf("reads: %w", err)
		}
		res.Reads = r
	}
	return nil
}

// createBenchTenants creates the tenants through the HTTP API and a
// publisher for each, logged in as the tenant's producer principal when the
// brokers authenticate. It returns the tenants' tokens and publishers (also
// the publishers made before an error, for the caller to close).
func createBenchTenants(ctx context.Context, c config, srv *server.Server, kafkaAuth string, tenants []events.TenantID, res *Results) (map[events.TenantID]string, []*kafka.Publisher, error) {
	base := "http://" + srv.HTTPAddr()
	tokens := make(map[events.TenantID]string, len(tenants))
	pubs := make([]*kafka.Publisher, len(tenants))
	res.VaultProducers = "anonymous"
	for i, t := range tenants {
		var out struct {
			Token string
			Kafka *kafkaCredential // none when the brokers do not authenticate
		}
		if err := call(ctx, "POST", base+"/v1/tenants", srv.AdminToken(), `{"id":"`+string(t)+`"}`, &out); err != nil {
			return nil, pubs, fmt.Errorf("create tenant %s: %w", t, err)
		}
		tokens[t] = out.Token
		auth, err := producerAuth(srv.KafkaAuth(), t, out.Kafka)
		if err != nil {
			return nil, pubs, err
		}
		if auth.User == "" && kafkaAuth == "scram" && len(c.brokers) == 0 {
			return nil, pubs, fmt.Errorf("create tenant %s: no Kafka credential in the answer, and the embedded broker authenticates", t)
		}
		if auth.User != "" {
			res.VaultProducers = "SASL/" + cmp.Or(auth.Mechanism, kafka.SCRAMSHA256) + " per tenant"
		}
		if pubs[i], err = kafka.NewPublisher(kafka.PublisherConfig{Brokers: srv.Brokers(), Auth: auth}); err != nil {
			return nil, pubs, fmt.Errorf("publisher of tenant %s: %w", t, err)
		}
	}
	return tokens, pubs, nil
}

// checkQueryable checks that every event is queryable: the versions of
// each tenant's streams add up to perTenant.
func checkQueryable(ctx context.Context, base string, tenants []events.TenantID, tokens map[events.TenantID]string, perTenant int) error {
	for _, t := range tenants {
		var out struct {
			Streams []struct{ Version uint64 }
		}
		if err := call(ctx, "GET", base+"/v1/tenants/"+string(t)+"/streams?limit=1000", tokens[t], "", &out); err != nil {
			return fmt.Errorf("list streams of %s: %w", t, err)
		}
		var sum uint64
		for _, s := range out.Streams {
			sum += s.Version
		}
		if sum != uint64(perTenant) {
			return fmt.Errorf("tenant %s: %d events queryable, want %d", t, sum, perTenant)
		}
	}
	return nil
}

// kafkaCredential is the "kafka" member of a tenant's create answer: the
// producer principal of the tenant, allowed to write its topic only.
type kafkaCredential struct{ User, Password, Topic string }

// producerAuth is how tenant t's producers log in: with cred, the producer
// credential of t's create answer (nil: anonymous), by the vault's own SASL
// mechanism and over its TLS, if any (the same listener).
func producerAuth(vault kafka.Auth, t events.TenantID, cred *kafkaCredential) (kafka.Auth, error) {
	auth := kafka.Auth{TLS: vault.TLS}
	if cred == nil {
		return auth, nil
	}
	if cred.User == "" || cred.Password == "" {
		return kafka.Auth{}, fmt.Errorf("tenant %s: Kafka credential without user or password", t)
	}
	if cred.Topic != events.TopicFor(t) {
		return kafka.Auth{}, fmt.Errorf("tenant %s: Kafka credential for topic %q, want %q", t, cred.Topic, events.TopicFor(t))
	}
	auth.Mechanism, auth.User, auth.Password = vault.Mechanism, cred.User, cred.Password
	return auth, nil
}

// prepare builds every record before the clock starts: the producers'
// work of encoding events is theirs, not the vault's. Each record is keyed
// by its stream id, and its message UUID is its number within its tenant.
func prepare(c config, tenants []events.TenantID, perTenant int) [][][]*message.Message {
	return prepareKeyed(c, tenants, perTenant, func(_ events.TenantID, stream string) string { return stream })
}

// prepareKeyed is prepare with the record keys key(tenant, stream).
func prepareKeyed(c config, tenants []events.TenantID, perTenant int, key func(t events.TenantID, stream string) string) [][][]*message.Message {
	batches := make([][][]*message.Message, len(tenants))
	for i, t := range tenants {
		for j := 0; j < perTenant; j += c.chunk {
			msgs := make([]*message.Message, 0, c.chunk)
			for k := j; k < min(j+c.chunk, perTenant); k++ {
				stream, b := record(t, k, c.streams, c.payload)
				m := message.NewMessage(strconv.Itoa(k), b)
				m.Metadata.Set(kafka.MetadataKey, key(t, stream))
				msgs = append(msgs, m)
			}
			batches[i] = append(batches[i], msgs)
		}
	}
	return batches
}

// publishAll publishes each tenant's batches to its topic through that
// tenant's publisher (pubs[i] is tenants[i]'s), c.publishers tenants at a
// time.
func publishAll(ctx context.Context, c config, pubs []*kafka.Publisher, tenants []events.TenantID, batches [][][]*message.Message) error {
	topics := make([]string, len(tenants))
	for i, t := range tenants {
		topics[i] = events.TopicFor(t)
	}
	return publishTo(ctx, c, pubs, topics, batches)
}

// publishTo publishes batches[i] to topics[i] through pubs[i], c.publishers
// of them at a time.
func publishTo(ctx context.Context, c config, pubs []*kafka.Publisher, topics []string, batches [][][]*message.Message) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.publishers)
	for i, topic := range topics {
		g.Go(func() error {
			for _, msgs := range batches[i] {
				if err := pubs[i].Publish(topic, msgs...); err != nil {
					return fmt.Errorf("publish %s: %w", topic, err)
				}
				if gctx.Err() != nil {
					return gctx.Err()
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// benchTransport measures Kafka without the vault: an embedded broker
// configured as vaultd configures its own (data dir, one batch a segment
// for ingress retention), the same Publisher, and the same Subscriber with
// one subscription per tenant topic. Without toBadger each message is
// acked as it arrives; with it, each topic's messages are gathered as the
// ingest runner gathers them (up to 512, waiting 5ms for more), written to
// the tenant's Badger DB in transactions of baselineBatch, with the vault's options, as benchBaseline
// writes them, then acked. The clock runs from the first publish to the
// last message acked.
func benchTransport(ctx context.Context, c config, dir string, tenants []events.TenantID, perTenant int, toBadger bool) (*Phase, error) {
	brokers := c.brokers
	if len(brokers) == 0 {
		broker, err := kafka.StartEmbedded(kafka.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "broker"),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if err != nil {
			return nil, err
		}
		defer broker.Close()
		brokers = []string{broker.Addr()}
	}
	admin, err := kafka.NewAdmin(brokers, kafka.Auth{})
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	sub, err := kafka.NewSubscriber(kafka.SubscriberConfig{Brokers: brokers, ConsumerGroup: "vaultbench-" + runID})
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: brokers})
	if err != nil {
		return nil, err
	}
	defer pub.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var acked atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errs := make(chan error, len(tenants))
	for _, t := range tenants {
		topic := events.TopicFor(t)
		if err := admin.CreateTopic(ctx, topic, 1); err != nil {
			return nil, err
		}
		var db *badger.DB
		if toBadger {
			cfg := projections.Config{Dir: dir}
			if db, err = badger.Open(cfg.BadgerOptionsFor(filepath.Join(dir, string(t)))); err != nil {
				return nil, err
			}
			defer db.Close()
		}
		ch, err := sub.Subscribe(ctx, topic)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := drainTransport(ch, db, c.streams, &acked); err != nil {
				errs <- err
				cancel()
			}
		}()
	}

	batches := prepare(c, tenants, perTenant)
	total := int64(perTenant * len(tenants))
	cpu0 := cpuSeconds()
	start := time.Now()
	// One anonymous publisher for every tenant's topic: these phases
	// measure the transport, not the producers' logins.
	if err := publishAll(ctx, c, slices.Repeat([]*kafka.Publisher{pub}, len(tenants)), tenants, batches); err != nil {
		return nil, err
	}
	if err := waitAcked(&acked, total, errs); err != nil {
		return nil, err
	}
	p := &Phase{Seconds: time.Since(start).Seconds(), CPUSeconds: cpuSeconds() - cpu0}
	p.EventsPerSec = float64(total) / p.Seconds
	return p, nil
}

// drainTransport acknowledges every message of ch, counting them in acked;
// with a db it first writes each batch there as the baseline does.
func drainTransport(ch <-chan *message.Message, db *badger.DB, streams int, acked *atomic.Int64) error {
	if db == nil {
		for m := range ch {
			m.Ack()
			acked.Add(1)
		}
		return nil
	}
	var seq int
	return consumeBatches(ch, func(batch []*message.Message) error {
		for part := range slices.Chunk(batch, baselineBatch) {
			if err := db.Update(func(txn *badger.Txn) error {
				for _, m := range part {
					if err := writeBaselineRecord(txn, seq, streams, m.Payload); err != nil {
						return err
					}
					seq++
				}
				return nil
			}); err != nil {
				return err
			}
		}
		for _, m := range batch {
			m.Ack()
		}
		acked.Add(int64(len(batch)))
		return nil
	})
}

// benchBaseline writes the same records into one Badger DB per tenant, with
// the vault's store options (fsync included), one transaction per batch,
// tenants in parallel. Per event it makes the writes the vault's store
// makes — the log entry, the event-id index entry, the stream's state row —
// with the raw event as the value: what the vault does minus Kafka,
// decoding, encryption, projection logic and audit.
func benchBaseline(c config, dir string, tenants []events.TenantID, perTenant int, res *Results) error {
	const batch = baselineBatch
	cfg := projections.Config{Dir: dir}
	dbs := make([]*badger.DB, len(tenants))
	for i, t := range tenants {
		db, err := badger.Open(cfg.BadgerOptionsFor(filepath.Join(dir, string(t))))
		if err != nil {
			return err
		}
		defer db.Close()
		dbs[i] = db
	}
	payloads := make([][][]byte, len(tenants))
	for i, t := range tenants {
		payloads[i] = make([][]byte, perTenant)
		for j := range perTenant {
			_, payloads[i][j] = record(t, j, c.streams, c.payload)
		}
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(tenants))
	for i := range tenants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perTenant && errs[i] == nil; j += batch {
				errs[i] = dbs[i].Update(func(txn *badger.Txn) error {
					for k := j; k < min(j+batch, perTenant); k++ {
						if err := writeBaselineRecord(txn, k, c.streams, payloads[i][k]); err != nil {
							return err
						}
					}
					return nil
				})
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	res.BaselineSeconds = time.Since(start).Seconds()
	res.BaselineEventsPerSec = float64(perTenant*len(tenants)) / res.BaselineSeconds
	res.BaselineCPUSeconds = cpuSeconds() - cpu0
	return nil
}

// startServer opens and runs a vaultd on cfg (on loopback ports of its own,
// logging warnings to stderr) until stop is called.
func startServer(ctx context.Context, cfg server.Config) (srv *server.Server, stop func(), err error) {
	cfg.HTTPAddr, cfg.KafkaAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv = &server.Server{Config: cfg, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	ctx, cancel := context.WithCancel(ctx)
	if err := srv.Open(ctx); err != nil {
		cancel()
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	return srv, func() {
		cancel()
		<-done
		srv.Close()
	}, nil
}

// waitAcked waits until acked reaches total (the clock of a phase stops
// there), or an error comes from errs, or ten minutes pass.
func waitAcked(acked *atomic.Int64, total int64, errs <-chan error) error {
	deadline := time.Now().Add(10 * time.Minute)
	for acked.Load() < total {
		select {
		case err := <-errs:
			return err
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d records committed after 10 minutes", acked.Load(), total)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// startCPUProfile starts a CPU profile into path ("": none) and returns
// the function that stops it; calling that more than once is harmless.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}

// baselineBatch is the events per transaction of the Badger-only writers: 3
// writes of ~400 B per event stay under the 300 KiB transaction limit of
// the vault's store options.
const baselineBatch = 256

// writeBaselineRecord makes the writes the vault's store makes for the
// k-th event of a tenant — the log entry, the event-id index entry, the
// stream's state row — with the raw event as the value.
func writeBaselineRecord(txn *badger.Txn, k, streams int, value []byte) error {
	stream := []byte(fmt.Sprintf("s/%032d", k%streams))
	logKey := binary.BigEndian.AppendUint64(append([]byte("l/"), stream[2:]...), uint64(k))
	idKey := []byte(fmt.Sprintf("i/%032d", k))
	for _, kv := range [][2][]byte{{logKey, value}, {idKey, logKey}, {stream, value}} {
		if err := txn.Set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// call makes an HTTP request to the vault's API with a bearer token and
// decodes its JSON answer into out.
func call(ctx context.Context, method, url, token, body string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// cpuSeconds is the user and system CPU time the process has used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// resetPeakRSS returns freed memory to the OS and restarts the process's
// peak RSS (VmHWM) from the current RSS, so that each run of -runs reports
// its own peak. Without Linux's clear_refs the peak stays the process's.
func resetPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// rssMiB reads a resident-set figure of the process from /proc/self/status:
// "VmHWM:" (peak) or "VmRSS:" (now).
func rssMiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}
