package kafka

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The broker child process: the test binary re-executed with these set runs
// only a broker on $dataDir, prints "ADDR host:port" and serves until its
// stdin closes (then it stops cleanly) or it is killed.
const (
	envChild = "TENANTVAULT_KAFKA_TEST_BROKER_DIR"
	envSync  = "TENANTVAULT_KAFKA_TEST_BROKER_SYNC"
	envRaw   = "TENANTVAULT_KAFKA_TEST_BROKER_RAW" // plain kfake, without Embedded's auto-create persistence
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envChild); dir != "" {
		os.Exit(brokerChild(dir, os.Getenv(envSync) == "1", os.Getenv(envRaw) == "1"))
	}
	os.Exit(m.Run())
}

func brokerChild(dir string, sync, raw bool) int {
	var (
		addr   string
		stopFn func()
	)
	if raw {
		opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1), kfake.DataDir(dir)}
		if sync {
			opts = append(opts, kfake.SyncWrites())
		}
		c, err := kfake.NewCluster(opts...)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		addr, stopFn = c.ListenAddrs()[0], c.Close
	} else {
		e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, SyncWrites: sync, Logger: testLogger()})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		addr, stopFn = e.Addr(), func() { _ = e.Close() }
	}
	fmt.Printf("ADDR %s\n", addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
	stopFn()
	return 0
}

// brokerProc is a broker child process.
type brokerProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startBrokerProc(t *testing.T, dir string, sync, raw bool) *brokerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+dir, envSync+"="+b01(sync), envRaw+"="+b01(raw))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start broker child: %v", err)
	}
	p := &brokerProc{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { p.kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("broker child: read address: %q, %v", line, err)
	}
	p.addr = strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	return p
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// kill sends SIGKILL and reaps the child.
func (p *brokerProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// stop asks the child to Close cleanly and waits for it.
func (p *brokerProc) stop(t *testing.T) {
	t.Helper()
	_ = p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("broker child exit: %v", err)
	}
}

// brokerState is what a broker holds, as a client sees it.
type brokerState struct {
	topics    []string
	end       map[string]int64 // high watermark of partition 0
	committed map[string]int64 // group -> committed offset of its topic's partition 0
}

func inspect(t *testing.T, addr string, groups map[string]string) brokerState {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	td, err := adm.ListTopics(ctx)
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	st := brokerState{topics: td.Names(), end: map[string]int64{}, committed: map[string]int64{}}
	if len(st.topics) > 0 {
		ends, err := adm.ListEndOffsets(ctx, st.topics...)
		if err != nil {
			t.Fatalf("ListEndOffsets: %v", err)
		}
		for _, tp := range st.topics {
			if o, ok := ends.Lookup(tp, 0); ok && o.Err == nil {
				st.end[tp] = o.Offset
			}
		}
	}
	for group, topic := range groups {
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			t.Fatalf("FetchOffsets(%s): %v", group, err)
		}
		st.committed[group] = -1
		if o, ok := offs.Lookup(topic, 0); ok && o.Err == nil {
			st.committed[group] = o.At
		}
	}
	return st
}

// TestEmbeddedPersistence runs a broker with a DataDir in a child process:
// it creates a topic explicitly, auto-creates another, publishes, commits
// offsets, keeps publishing, stops the broker (clean Close or SIGKILL) and
// restarts it on the same DataDir, then checks what survived. Every record
// the broker acknowledged and every committed offset must survive both.
//
// The "kfake" cases run plain kfake without Embedded's auto-create
// persistence and record its behaviour: an auto-created topic is lost on
// SIGKILL (its records stay on disk, unreachable).
func TestEmbeddedPersistence(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	const (
		explicit = "tenant.explicit.events"
		auto     = "tenant.auto.events"
		n        = 100
	)
	groups := map[string]string{"vault." + explicit: explicit, "vault." + auto: auto}
	for _, tc := range []struct {
		name       string
		raw, sync  bool
		kill       bool
		wantAutoOK bool
	}{
		{name: "embedded/close", wantAutoOK: true},
		{name: "embedded/kill", kill: true, wantAutoOK: true},
		{name: "embedded/kill/syncwrites", kill: true, sync: true, wantAutoOK: true},
		{name: "kfake/close", raw: true, wantAutoOK: true},
		{name: "kfake/kill", raw: true, kill: true, wantAutoOK: false},
		{name: "kfake/kill/syncwrites", raw: true, kill: true, sync: true, wantAutoOK: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b := startBrokerProc(t, dir, tc.sync, tc.raw)
			ctx := context.Background()

			adm := MustNewAdmin(t, b.addr)
			if err := adm.CreateTopic(ctx, explicit, 1); err != nil {
				t.Fatalf("CreateTopic: %v", err)
			}
			pub, err := NewPublisher(PublisherConfig{Brokers: []string{b.addr}, WriteTimeout: 3 * time.Second, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer pub.Close()
			mustPublish(t, pub, explicit, 0, n)
			mustPublish(t, pub, auto, 0, n) // auto-created by the producer's metadata request

			sub := MustNewSubscriber(t, b.addr, "vault", nil)
			for topic, ack := range map[string]int{explicit: 60, auto: 40} {
				ch, err := sub.Subscribe(ctx, topic)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i++ {
					if m := recv(t, ch, recvTimeout); i < ack {
						m.Ack()
					}
				}
				waitCommitted(t, b.addr, "vault."+topic, topic, int64(ack))
			}
			if err := sub.Close(); err != nil {
				t.Fatal(err)
			}

			// Keep producing while the broker goes down; count the acks.
			var acked atomic.Int64
			acked.Store(n)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := n; ; i += 50 {
					if err := pub.Publish(explicit, testMessages(i, 50)...); err != nil {
						return
					}
					acked.Add(50)
					if !tc.kill && acked.Load() >= 1000 {
						return
					}
				}
			}()
			if tc.kill {
				// Kill it with publishes under way: some acked already.
				deadline := time.Now().Add(recvTimeout)
				for acked.Load() < n+100 {
					if time.Now().After(deadline) {
						t.Fatalf("%d records acked in %s, want %d before the kill", acked.Load(), recvTimeout, n+100)
					}
					time.Sleep(time.Millisecond)
				}
				b.kill()
			} else {
				<-done
				b.stop(t)
			}
			<-done
			before := acked.Load()

			b2 := startBrokerProc(t, dir, tc.sync, tc.raw)
			st := inspect(t, b2.addr, groups)
			t.Logf("%s: acked %d records to %s before the stop; after restart: topics %v, end offsets %v, committed %v",
				tc.name, before, explicit, st.topics, st.end, st.committed)

			if !slices.Contains(st.topics, explicit) {
				t.Errorf("explicitly created topic %s lost; topics %v", explicit, st.topics)
			}
			if got := st.end[explicit]; got < before {
				t.Errorf("%s has %d records, want the %d acked", explicit, got, before)
			}
			if got := st.committed["vault."+explicit]; got != 60 {
				t.Errorf("committed offset of %s = %d, want 60", explicit, got)
			}
			if got := slices.Contains(st.topics, auto); got != tc.wantAutoOK {
				t.Errorf("auto-created topic %s present = %v, want %v", auto, got, tc.wantAutoOK)
			}
			if tc.wantAutoOK && st.end[auto] != n {
				t.Errorf("%s has %d records, want %d", auto, st.end[auto], n)
			}
			// A lost topic takes its group's committed offsets with it.
			wantAutoCommit := int64(-1)
			if tc.wantAutoOK {
				wantAutoCommit = 40
			}
			if got := st.committed["vault."+auto]; got != wantAutoCommit {
				t.Errorf("committed offset of %s = %d, want %d", auto, got, wantAutoCommit)
			}

			// A consumer in the group resumes at the committed offset and
			// reads every record in order.
			sub2 := MustNewSubscriber(t, b2.addr, "vault", nil)
			ch, err := sub2.Subscribe(ctx, explicit)
			if err != nil {
				t.Fatal(err)
			}
			for want := int64(60); want < st.end[explicit]; want++ {
				m := recv(t, ch, recvTimeout)
				if got := offsetOf(t, m); got != want {
					t.Fatalf("after restart: offset %d, want %d", got, want)
				}
				if got := string(m.Payload); got != strconv.FormatInt(want, 10) {
					t.Fatalf("after restart: offset %d holds %q", want, got)
				}
				m.Ack()
			}

			if tc.raw && !tc.wantAutoOK {
				recreateLostTopic(t, b2, dir, tc.sync, auto)
			}
		})
	}
}

// recreateLostTopic records what happens when the vault re-creates a topic
// that plain kfake lost in a crash, as it would for a known tenant: the new
// topic starts at offset 0, but its partition directory still holds the old
// segment, and kfake appends to it while indexing from its start.
func recreateLostTopic(t *testing.T, b *brokerProc, dir string, sync bool, topic string) {
	ctx := context.Background()
	adm := MustNewAdmin(t, b.addr)
	if err := adm.CreateTopic(ctx, topic, 1); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	pub := MustNewPublisher(t, b.addr)
	mustPublish(t, pub, topic, 1000, 5)
	// kfake serves the pre-crash records at the new offsets: a known kfake
	// bug that Embedded avoids by never losing a topic. If this starts
	// failing, kfake changed: re-check and update the package notes.
	want := []string{"0:0", "1:1", "2:2", "3:3", "4:4"}
	got := readPayloads(t, b.addr, topic)
	t.Logf("re-created %s after the crash, published 1000..1004: reads back %v", topic, got)
	if !slices.Equal(got, want) {
		t.Errorf("re-created %s reads back %v, want kfake's stale %v", topic, got, want)
	}
	b.stop(t)
	b2 := startBrokerProc(t, dir, sync, true)
	got = readPayloads(t, b2.addr, topic)
	t.Logf("re-created %s after a clean restart: reads back %v", topic, got)
	if !slices.Equal(got, want) {
		t.Errorf("re-created %s after restart reads back %v, want kfake's stale %v", topic, got, want)
	}
}

// readPayloads reads topic's partition 0 from the start to its end offset.
func readPayloads(t *testing.T, addr, topic string) []string {
	t.Helper()
	end := inspect(t, addr, nil).end[topic]
	var out []string
	if end == 0 {
		return out
	}
	sub := MustNewSubscriber(t, addr, fmt.Sprintf("read-%d", time.Now().UnixNano()), nil)
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case m := <-ch:
			out = append(out, fmt.Sprintf("%d:%s", offsetOf(t, m), m.Payload))
			m.Ack()
			if offsetOf(t, m) == end-1 {
				_ = sub.Close()
				return out
			}
		case <-time.After(5 * time.Second):
			_ = sub.Close()
			return append(out, "(timeout)")
		}
	}
}

// TestEmbeddedConfig checks the config rules.
func TestEmbeddedConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg     EmbeddedConfig
		wantErr bool
	}{
		{EmbeddedConfig{Addr: "0.0.0.0:0"}, true},
		{EmbeddedConfig{Addr: ":0"}, true},
		{EmbeddedConfig{Addr: "127.0.0.1"}, true},
		{EmbeddedConfig{Addr: "127.0.0.1:0", SyncWrites: true}, true},
		{EmbeddedConfig{Addr: "127.0.0.1:0", SegmentBytes: -1}, true},
		{EmbeddedConfig{Addr: "127.0.0.1:0"}, false},
	} {
		e, err := StartEmbedded(tc.cfg)
		if (err != nil) != tc.wantErr {
			t.Errorf("StartEmbedded(%+v) error = %v, want error %v", tc.cfg, err, tc.wantErr)
		}
		if err == nil {
			if _, _, err := net.SplitHostPort(e.Addr()); err != nil {
				t.Errorf("Addr() = %q: %v", e.Addr(), err)
			}
			_ = e.Close()
			_ = e.Close() // idempotent
		}
	}
}

// TestEmbeddedQuarantinesOrphans: records of a topic kfake lost in a crash
// are moved aside at start, so the topic created again starts clean.
func TestEmbeddedQuarantinesOrphans(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	t.Parallel()
	const topic = "tenant.lost.events"
	dir := t.TempDir()
	b := startBrokerProc(t, dir, false, true) // plain kfake
	pub, err := NewPublisher(PublisherConfig{Brokers: []string{b.addr}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, pub, topic, 0, 10)
	_ = pub.Close()
	b.kill()

	e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: dir, Logger: testLogger()})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	defer e.Close()
	moved, err := os.ReadDir(filepath.Join(dir, "orphaned"))
	if err != nil || len(moved) != 1 || !strings.HasPrefix(moved[0].Name(), topic+"-0.") {
		t.Fatalf("orphaned/ holds %v (%v), want the partition of %s", moved, err, topic)
	}
	mustPublish(t, MustNewPublisher(t, e.Addr()), topic, 1000, 3)
	got := readPayloads(t, e.Addr(), topic)
	if want := []string{"0:1000", "1:1001", "2:1002"}; !slices.Equal(got, want) {
		t.Fatalf("re-created %s reads back %v, want %v", topic, got, want)
	}
}

// TestEmbeddedKeepsOffsetsOfEmptiedPartitions: a partition whose records
// were all deleted by an Admin WithLogEndMarkers (as vaultd's ingress
// retention does on the embedded broker) comes back from a restart (clean
// or killed) at its end offset: the marker it keeps holds them, and new
// records get new offsets. Without markers kfake forgets them (back at 0:
// the reason for markers). A partition with records left, and a topic
// deleted and created again, are as kfake has them.
func TestEmbeddedKeepsOffsetsOfEmptiedPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts broker processes")
	}
	t.Parallel()
	const (
		emptied = "tenant.emptied.events"
		bare    = "tenant.bare.events" // emptied without a marker
		partial = "tenant.partial.events"
		again   = "tenant.again.events"
	)
	for _, kill := range []bool{false, true} {
		t.Run(map[bool]string{false: "close", true: "kill"}[kill], func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			b := startBrokerProc(t, dir, false, false)
			ctx := context.Background()
			adm := mustNewMarkingAdmin(t, b.addr)
			pub, err := NewPublisher(PublisherConfig{Brokers: []string{b.addr}, Logger: testLogger()})
			if err != nil {
				t.Fatal(err)
			}
			for _, topic := range []string{emptied, bare, partial, again} {
				for i := 0; i < 5; i++ {
					mustPublish(t, pub, topic, i, 1)
				}
			}
			_ = pub.Close()
			for topic, before := range map[string]int64{emptied: 5, partial: 3, again: 5} {
				if err := adm.DeleteRecords(ctx, topic, map[int]int64{0: before}); err != nil {
					t.Fatalf("DeleteRecords(%s): %v", topic, err)
				}
			}
			if err := MustNewAdmin(t, b.addr).DeleteRecords(ctx, bare, map[int]int64{0: 5}); err != nil {
				t.Fatalf("DeleteRecords(%s): %v", bare, err)
			}
			// Deleted and created again (empty): starts at 0 again.
			if err := adm.DeleteTopic(ctx, again); err != nil {
				t.Fatalf("DeleteTopic: %v", err)
			}
			if err := adm.CreateTopic(ctx, again, 1); err != nil {
				t.Fatalf("CreateTopic: %v", err)
			}
			if kill {
				b.kill()
			} else {
				b.stop(t)
			}

			b2 := startBrokerProc(t, dir, false, false)
			adm2 := mustNewMarkingAdmin(t, b2.addr)
			// emptied: the marker at 5 is left.
			for topic, want := range map[string][2]int64{emptied: {5, 6}, bare: {0, 0}, partial: {3, 5}, again: {0, 0}} {
				if got := [2]int64{startOffset(t, adm2, topic, 0), endOffset(t, adm2, topic, 0)}; got != want {
					t.Errorf("%s after restart: log start and end offsets %v, want %v", topic, got, want)
				}
			}
			mustPublish(t, MustNewPublisher(t, b2.addr), emptied, 100, 2)
			if got, want := readPayloads(t, b2.addr, emptied), []string{"6:100", "7:101"}; !slices.Equal(got, want) {
				t.Errorf("%s after restart reads %v, want %v (the marker skipped)", emptied, got, want)
			}
			// Emptied again: a new marker at 8 holds the offsets.
			if err := adm2.DeleteRecords(ctx, emptied, map[int]int64{0: 8}); err != nil {
				t.Fatalf("DeleteRecords(%s): %v", emptied, err)
			}
			b2.stop(t)

			b3 := startBrokerProc(t, dir, false, false)
			adm3 := MustNewAdmin(t, b3.addr)
			if got, want := [2]int64{startOffset(t, adm3, emptied, 0), endOffset(t, adm3, emptied, 0)}, [2]int64{8, 9}; got != want {
				t.Errorf("%s after a second restart: log start and end offsets %v, want %v", emptied, got, want)
			}
		})
	}
}

// mustNewMarkingAdmin returns an Admin WithLogEndMarkers for addr, closed
// when tb ends.
func mustNewMarkingAdmin(tb testing.TB, addr string) *Admin {
	tb.Helper()
	a, err := NewAdmin([]string{addr}, Auth{}, WithLogEndMarkers())
	if err != nil {
		tb.Fatalf("NewAdmin: %v", err)
	}
	tb.Cleanup(func() { _ = a.Close() })
	return a
}
