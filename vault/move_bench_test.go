package vault_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/vault"
)

var benchMoveEvents = flag.Int("move-events", 20000, "events of the tenant BenchmarkMove exports and imports (the issue's figure is 1000000)")

// BenchmarkMove measures export and import of one tenant of
// -move-events events: MB/s and events/s of each, and as a ratio to a
// baseline measured in the same run — the bundle's bytes written to a
// file and fsynced, then read back: what moving the same bytes through
// the disk costs without any of the checks.
func BenchmarkMove(b *testing.B) {
	ctx := context.Background()
	src := mustMover(b, "src.example/audit")
	src.MustCreateTenant(b, "acme")
	const batch = 2000
	for off := 0; off < *benchMoveEvents; off += batch {
		n := min(batch, *benchMoveEvents-off)
		msgs := make([]vault.Message, n)
		for i := range msgs {
			stream := fmt.Sprintf("s%d", (off+i)%100)
			msgs[i] = vault.Message{Topic: events.TopicFor("acme"), Offset: int64(off + i), Key: []byte(stream),
				Value: event(b, fmt.Sprintf("e%d", off+i), stream, fmt.Sprintf(`{"n":%d,"pad":"0123456789abcdef0123456789abcdef"}`, off+i))}
		}
		if err := src.Vault.Ingest(ctx, events.TopicFor("acme"), msgs); err != nil {
			b.Fatal(err)
		}
	}
	var exportD, importD, copyD time.Duration
	var size int
	b.ResetTimer()
	for range b.N {
		dst := mustMover(b, "dst.example/audit")
		key := dst.importKey(b)
		id, fp, err := src.Vault.PrepareExport(ctx, src.Admin(b), "acme", key)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		t0 := time.Now()
		if _, err := src.Vault.Export(ctx, src.Admin(b), id, key, fp, &buf, nil); err != nil {
			b.Fatal(err)
		}
		exportD += time.Since(t0)
		size = buf.Len()
		t0 = time.Now()
		diskCopy(b, buf.Bytes())
		copyD += time.Since(t0)
		t0 = time.Now()
		if _, err := dst.Vault.Import(ctx, dst.Admin(b), bytes.NewReader(buf.Bytes()), src.Audit.PublicKey()); err != nil {
			b.Fatal(err)
		}
		importD += time.Since(t0)
		b.StopTimer()
		dst.Close(b)
		b.StartTimer()
	}
	n := float64(b.N)
	mb := float64(size) / 1e6
	ev := float64(*benchMoveEvents)
	b.ReportMetric(mb/(exportD.Seconds()/n), "export-MB/s")
	b.ReportMetric(ev/(exportD.Seconds()/n), "export-events/s")
	b.ReportMetric(mb/(importD.Seconds()/n), "import-MB/s")
	b.ReportMetric(ev/(importD.Seconds()/n), "import-events/s")
	b.ReportMetric(mb/(copyD.Seconds()/n), "disk-copy-MB/s")
	b.ReportMetric(copyD.Seconds()/exportD.Seconds(), "export/copy")
	b.ReportMetric(copyD.Seconds()/importD.Seconds(), "import/copy")
	b.ReportMetric(mb, "bundle-MB")
}

// diskCopy writes data to a new file, fsyncs it, and reads it back.
func diskCopy(b *testing.B, data []byte) {
	path := filepath.Join(b.TempDir(), "bundle.copy")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyBuffer(io.Discard, f, make([]byte, 32<<10)); err != nil {
		b.Fatal(err)
	}
	f.Close()
}
