package vault_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tenantvault/tenantvault/internal/vaulttest"
)

// TestCrossArch exports a tenant on this machine, then imports the bundle
// into the same destination vault with this package's tests built for
// arm64 and s390x (big-endian) and run under qemu-user-static: the import,
// the records root, the reads and the audit verification must give the
// same answer on each. Opt in with TENANTVAULT_CROSSARCH=1 (it builds the
// package twice); without qemu-user-static it skips, or fails under
// CI=true.
func TestCrossArch(t *testing.T) {
	if os.Getenv("TENANTVAULT_CROSSARCH") == "" {
		t.Skip("set TENANTVAULT_CROSSARCH=1 to run (builds for arm64 and s390x, runs under qemu-user-static)")
	}
	src, dst := mustMover(t, "src.example/audit"), mustMover(t, "dst.example/audit")
	token := src.MustCreateTenant(t, "acme")
	src.ingestN(t, "acme", 300, 7)
	b, _ := src.export(t, "acme", dst.importKey(t))
	dst.Close(t)
	work := t.TempDir()
	bundlePath := filepath.Join(work, "acme.tvbundle")
	if err := os.WriteFile(bundlePath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(arch string) string {
		dir := filepath.Join(work, "dst-"+arch)
		if err := exec.Command("cp", "-a", dst.Dir, dir).Run(); err != nil {
			t.Fatal(err)
		}
		bin, args := os.Args[0], []string{"-test.run", "^TestCrossArchImport$", "-test.v"}
		if arch != runtime.GOARCH {
			qemu := map[string]string{"arm64": "qemu-aarch64-static", "s390x": "qemu-s390x-static"}[arch]
			if _, err := exec.LookPath(qemu); err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is not installed: apt-get install -y qemu-user-static", qemu)
				}
				t.Skipf("%s is not installed", qemu)
			}
			bin = filepath.Join(work, "vault."+arch+".test")
			build := exec.Command("go", "test", "-c", "-o", bin, ".")
			build.Env = append(os.Environ(), "GOARCH="+arch, "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("build for %s: %v\n%s", arch, err, out)
			}
			args = append([]string{bin}, args...)
			bin = qemu
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "CROSSARCH_DIR="+dir, "CROSSARCH_BUNDLE="+bundlePath, "CROSSARCH_SOURCE_KEY="+src.Audit.PublicKey(), "CROSSARCH_TOKEN="+token)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("import on %s: %v\n%s", arch, err, out)
		}
		var lines []string
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.Index(l, "CROSSARCH "); i >= 0 {
				lines = append(lines, strings.TrimSpace(l[i:]))
			}
		}
		if len(lines) < 3 {
			t.Fatalf("import on %s printed no result:\n%s", arch, out)
		}
		return strings.Join(lines, "\n")
	}
	want := run(runtime.GOARCH)
	for _, arch := range []string{"arm64", "s390x"} {
		if got := run(arch); got != want {
			t.Errorf("on %s:\n%s\nwant (%s):\n%s", arch, got, runtime.GOARCH, want)
		} else {
			t.Logf("%s: identical to %s:\n%s", arch, runtime.GOARCH, got)
		}
	}
}

// TestCrossArchImport is TestCrossArch's other half, run by it (natively
// and under qemu): it imports the bundle into the vault in CROSSARCH_DIR
// and prints what must be identical on every architecture.
func TestCrossArchImport(t *testing.T) {
	dir := os.Getenv("CROSSARCH_DIR")
	if dir == "" {
		t.Skip("run by TestCrossArch")
	}
	ctx := context.Background()
	m := mover{vaulttest.MustOpen(t, vaulttest.Dir(dir), vaulttest.Movable("dst.example/audit"))}
	b, err := os.ReadFile(os.Getenv("CROSSARCH_BUNDLE"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Vault.Import(ctx, m.Admin(t), bytes.NewReader(b), os.Getenv("CROSSARCH_SOURCE_KEY"))
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	h := sha256.New()
	for _, s := range []string{"s0", "s3", "s6"} {
		for _, l := range m.history(t, os.Getenv("CROSSARCH_TOKEN"), "acme", s) {
			h.Write([]byte(l + "\n"))
		}
	}
	t.Logf("CROSSARCH import records=%d bytes=%d manifest=%s offsets=%v audit_verified=%d checkpoint=%d", res.Records, res.RecordBytes, res.ManifestSHA256, res.Offsets, res.AuditRecords, res.Checkpoint)
	t.Logf("CROSSARCH reads sha256=%s", hex.EncodeToString(h.Sum(nil)))
	if err := m.Audit.Verify(ctx); err != nil {
		t.Fatalf("audit Verify: %v", err)
	}
	t.Logf("CROSSARCH audit verify ok")
}
