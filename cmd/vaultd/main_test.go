package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/internal/kafka"
)

// vaultdBin is the vaultd binary built once for the process tests.
var vaultdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vaultd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vaultdBin = filepath.Join(dir, "vaultd")
	args := []string{"build", "-o", vaultdBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, ".")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build vaultd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a vaultd child process.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs bytes.Buffer
	done chan error
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func startVaultd(t *testing.T, dataDir, httpAddr, kafkaAddr string) *proc {
	t.Helper()
	return startProc(t, httpAddr,
		"TENANTVAULT_DATA_DIR="+dataDir, "TENANTVAULT_HTTP_ADDR="+httpAddr, "TENANTVAULT_KAFKA_ADDR="+kafkaAddr,
		"TENANTVAULT_ADMIN_TOKEN=", "TENANTVAULT_BROKERS=")
}

// startProc starts vaultd with env added to the test's environment and
// waits until httpAddr answers /readyz.
func startProc(t *testing.T, httpAddr string, env ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan error, 1)}
	p.cmd = exec.Command(vaultdBin)
	p.cmd.Env = append(os.Environ(), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("vaultd not ready after 30s; log:\n%s", p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func api(t *testing.T, method, url, token string, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		json.Unmarshal(b, out)
	}
	return resp.StatusCode
}

// apiQuiet is api for a server that may be down: status 0 when it is.
func apiQuiet(url, token string, out any) int {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, out)
	return resp.StatusCode
}

// fixture is a vaultd child process on a fresh data dir with one tenant.
type fixture struct {
	dir, httpAddr, kafkaAddr, base string
	admin, token                   string
	p                              *proc
}

// startWithTenant starts vaultd and creates tenant through the API.
func startWithTenant(t *testing.T, tenant string) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), httpAddr: freePort(t), kafkaAddr: freePort(t)}
	f.base = "http://" + f.httpAddr
	f.p = startVaultd(t, f.dir, f.httpAddr, f.kafkaAddr)
	b, err := os.ReadFile(filepath.Join(f.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	f.admin = strings.TrimSpace(string(b))
	var created struct {
		Token string
		Kafka struct{ User, Password string }
	}
	if st := api(t, "POST", f.base+"/v1/tenants", f.admin, `{"id":"`+tenant+`"}`, &created); st != 201 {
		t.Fatalf("create tenant %s = %d", tenant, st)
	}
	if created.Kafka.Password == "" {
		t.Fatalf("create tenant %s: no Kafka credential", tenant)
	}
	f.token = created.Token
	producers.Store(tenant, kafka.Auth{User: created.Kafka.User, Password: created.Kafka.Password})
	return f
}

// producers holds each test tenant's Kafka credential (tenant names are
// unique across this package's tests).
var producers sync.Map // tenant -> kafka.Auth

func producer(tenant string) kafka.Auth {
	a, _ := producers.Load(tenant)
	auth, _ := a.(kafka.Auth)
	return auth
}

// totalVersions adds up the versions of all streams of tenant.
func totalVersions(t *testing.T, base, tenant, token string) uint64 {
	t.Helper()
	var out struct{ Streams []struct{ Version uint64 } }
	if st := api(t, "GET", base+"/v1/tenants/"+tenant+"/streams?limit=1000", token, "", &out); st != 200 {
		return 0
	}
	var n uint64
	for _, s := range out.Streams {
		n += s.Version
	}
	return n
}

func publishN(t *testing.T, brokers, tenant string, from, n int) {
	t.Helper()
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{brokers}, Auth: producer(tenant)})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := from; i < from+n; i += 500 {
		var msgs []*message.Message
		for j := i; j < min(i+500, from+n); j++ {
			stream := fmt.Sprintf("stream-%d", j%20)
			e := events.Event{ID: fmt.Sprintf("ev-%d", j), Source: "test", SpecVersion: "1.0", Type: "t.happened", Subject: stream, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, j))}
			b, _ := e.Encode()
			m := message.NewMessage(e.ID, b)
			m.Metadata.Set(kafka.MetadataKey, stream)
			msgs = append(msgs, m)
		}
		if err := pub.Publish(events.TopicFor(events.TenantID(tenant)), msgs...); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

// publishQuiet publishes like publishN but reports failure instead of
// failing the test: for publishing into a broker that is being killed.
func publishQuiet(brokers, tenant string, from, n int) error {
	pub, err := kafka.NewPublisher(kafka.PublisherConfig{Brokers: []string{brokers}, Auth: producer(tenant), WriteTimeout: 2 * time.Second})
	if err != nil {
		return err
	}
	defer pub.Close()
	var msgs []*message.Message
	for j := from; j < from+n; j++ {
		stream := fmt.Sprintf("stream-%d", j%20)
		e := events.Event{ID: fmt.Sprintf("ev-%d", j), Source: "test", SpecVersion: "1.0", Type: "t.happened", Subject: stream, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, j))}
		b, _ := e.Encode()
		m := message.NewMessage(e.ID, b)
		m.Metadata.Set(kafka.MetadataKey, stream)
		msgs = append(msgs, m)
	}
	return pub.Publish(events.TopicFor(events.TenantID(tenant)), msgs...)
}

// metric reads the value of the Prometheus counter name (without labels)
// from base's /metrics, read with the admin token.
func metric(t *testing.T, base, admin, name string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s = %q: %v", name, v, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s in /metrics", name)
	return 0
}

// waitMetric waits until counter name reaches at least want.
func waitMetric(t *testing.T, base, admin, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := metric(t, base, admin, name)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 60s, want at least %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitTotal(t *testing.T, base, tenant, token string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := totalVersions(t, base, tenant, token)
		if got == want {
			return
		}
		if got > want {
			t.Fatalf("tenant %s holds %d events, want %d: duplicates", tenant, got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s holds %d events after 60s, want %d", tenant, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestProcessCrashAndSignals runs the real binary: a kill -9 in the middle
// of ingest loses and duplicates nothing (the embedded broker, the stores
// and the audit log come back), and SIGTERM shuts down cleanly.
func TestProcessCrashAndSignals(t *testing.T) {
	f := startWithTenant(t, "crashy")
	dir, httpAddr, kafkaAddr, base, p := f.dir, f.httpAddr, f.kafkaAddr, f.base, f.p
	admin, tok := f.admin, f.token
	if !strings.Contains(p.log(), "DEVELOPMENT ONLY") {
		t.Errorf("first start did not warn that the local master key is development only; log:\n%s", p.log())
	}
	for _, f := range []string{"admin.token", "master.key", "kafka.password"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}

	publishN(t, kafkaAddr, "crashy", 0, 3000)
	// Kill -9 while the batches are being applied.
	deadline := time.Now().Add(30 * time.Second)
	for totalVersions(t, base, "crashy", tok) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no event applied within 30s: the kill would not hit ingest")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done

	p = startVaultd(t, dir, httpAddr, kafkaAddr)
	waitTotal(t, base, "crashy", tok, 3000)
	// A tenant created just before a kill -9 keeps its topic, its producer
	// credential and its ACLs.
	var late struct {
		Token string
		Kafka struct{ User, Password string }
	}
	if st := api(t, "POST", base+"/v1/tenants", admin, `{"id":"late"}`, &late); st != 201 {
		t.Fatalf("create late = %d", st)
	}
	producers.Store("late", kafka.Auth{User: late.Kafka.User, Password: late.Kafka.Password})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p = startVaultd(t, dir, httpAddr, kafkaAddr)
	publishN(t, kafkaAddr, "late", 0, 10)
	waitTotal(t, base, "late", late.Token, 10)
	// The topic survived: more events flow after the crash.
	publishN(t, kafkaAddr, "crashy", 3000, 500)
	waitTotal(t, base, "crashy", tok, 3500)
	// Redelivered ids (a producer retrying) are consumed, found
	// duplicates, and applied once.
	dups := metric(t, base, admin, "tenantvault_events_duplicate_total")
	publishN(t, kafkaAddr, "crashy", 3400, 100)
	waitMetric(t, base, admin, "tenantvault_events_duplicate_total", dups+100)
	waitTotal(t, base, "crashy", tok, 3500)

	// SIGTERM: a clean, prompt shutdown.
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("vaultd exited with %v after SIGTERM; log:\n%s", err, p.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("vaultd did not exit 30s after SIGTERM; log:\n%s", p.log())
	}
	if !strings.Contains(p.log(), "shutting down") {
		t.Errorf("no shutdown log line; log:\n%s", p.log())
	}
	t.Logf("SIGTERM to exit: %v", time.Since(start))
	vaultKafka, err := os.ReadFile(filepath.Join(dir, "kafka.password"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{admin, tok, producer("crashy").Password, strings.TrimSpace(string(vaultKafka))} {
		if strings.Contains(p.log(), secret) {
			t.Fatalf("a token or password appears in the log")
		}
	}
	// And it starts again on the same data (stopped by the cleanup).
	startVaultd(t, dir, httpAddr, kafkaAddr)
	waitTotal(t, base, "crashy", tok, 3500)
}
