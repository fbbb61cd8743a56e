package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunSmall runs every phase of the load command on a few events: the
// vault's end-to-end phase checks over HTTP that each event is queryable.
// It asserts what was done, not how fast.
func TestRunSmall(t *testing.T) {
	out := filepath.Join(t.TempDir(), "res.json")
	var w bytes.Buffer
	c := config{events: 600, tenants: 3, payload: 64, streams: 5, publishers: 2, chunk: 50, runs: 2, out: out}
	if err := run(context.Background(), c, &w); err != nil {
		t.Fatalf("run: %v\n%s", err, w.String())
	}
	for _, want := range []string{"vault end-to-end:", "badger baseline:", "kafka only:", "kafka -> badger:", "ratio vault/baseline:", "ratio kafka->badger/baseline:", "ratio vault/(kafka->badger):", "run 2 of 2", "median ratio vault/baseline over 2 runs:"} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, w.String())
		}
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 2 || rep.MedianRatio <= 0 || rep.MedianKafkaBadgerRatio <= 0 || rep.MedianCeilingRatio <= 0 {
		t.Fatalf("report = %+v", rep)
	}
	for i, res := range rep.Runs {
		if res.Events != 600 || res.VaultEventsPerSec <= 0 || res.BaselineEventsPerSec <= 0 || res.Batches <= 0 ||
			res.KafkaOnly == nil || res.KafkaOnly.EventsPerSec <= 0 || res.KafkaBadger == nil || res.KafkaBadger.Ratio <= 0 {
			t.Errorf("run %d: results = %+v", i+1, res)
		}
	}
}
