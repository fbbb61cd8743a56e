package projections

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

func TestLogRecordCodec(t *testing.T) {
	when := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	for _, r := range []logRecord{
		{Version: 1, Event: events.Event{ID: "e", Source: "s", SpecVersion: "1.0", Type: "t", Subject: "x"}, Topic: "tenant.a.events", StoredAt: time.Unix(0, 42).UTC()},
		{Version: 1 << 40, Partition: 7, Offset: 1 << 33, StoredAt: time.Unix(1700000000, 5).UTC(), Topic: "t",
			Event: events.Event{ID: "é", Source: "s", SpecVersion: "1.0", Type: "t", Subject: "a/b", Time: when, DataContentType: "application/json",
				DataSchema: "urn:x", Tenant: "acme", Data: json.RawMessage(`{"a":[1,2]}`)}},
		{Version: 2, StoredAt: time.Unix(0, 0).UTC(), Event: events.Event{DataBase64: []byte{}, Data: json.RawMessage{}}},
		{Version: 3, StoredAt: time.Unix(0, 0).UTC(), Event: events.Event{DataBase64: []byte{0, 1, 2}}},
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got logRecord
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary(MarshalBinary(%+v)) = %v", r, err)
		}
		if !got.Event.Time.Equal(r.Event.Time) {
			t.Fatalf("time = %v, want %v", got.Event.Time, r.Event.Time)
		}
		got.Event.Time, r.Event.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip = %+v, want %+v", got, r)
		}
		for i := range b { // every truncation is refused, never a panic
			if err := new(logRecord).UnmarshalBinary(b[:i]); err == nil {
				t.Fatalf("UnmarshalBinary(first %d of %d bytes) = nil, want error", i, len(b))
			}
		}
	}
}

func FuzzLogRecord(f *testing.F) {
	r := logRecord{Version: 3, Topic: "t", Event: events.Event{ID: "i", Subject: "s", Data: json.RawMessage(`{}`)}, StoredAt: time.Unix(0, 1)}
	b, _ := r.MarshalBinary()
	f.Add(b)
	f.Add([]byte{logCodecV1})
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r logRecord
		if err := r.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var r2 logRecord
		if err := r2.UnmarshalBinary(again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if r2.Version != r.Version || r2.Event.ID != r.Event.ID || string(r2.Event.Data) != string(r.Event.Data) {
			t.Fatalf("round trip changed the record")
		}
	})
}

func TestStateRecordCodec(t *testing.T) {
	at := time.Date(2026, 11, 30, 4, 5, 6, 7, time.UTC)
	for _, r := range []stateRecord{
		{Stream: "order-1", Version: 7, Data: json.RawMessage(`{"a":1}`), UpdatedAt: at},
		{Stream: "order-2", Version: 1 << 40, UpdatedAt: at, Deleted: true},
		{Stream: "", Version: 1, Data: json.RawMessage(`null`), UpdatedAt: at},
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got stateRecord
		if err := got.UnmarshalBinary(b); err != nil || !reflect.DeepEqual(got, r) {
			t.Errorf("UnmarshalBinary(MarshalBinary(%+v)) = %+v, %v", r, got, err)
		}
		for i := range b { // every cut is refused
			if err := new(stateRecord).UnmarshalBinary(b[:i]); err == nil {
				t.Errorf("UnmarshalBinary of %d of %d bytes = nil error", i, len(b))
			}
		}
		// States sealed as JSON by earlier versions still open.
		j, _ := json.Marshal(struct {
			Stream    string          `json:"stream"`
			Version   uint64          `json:"v"`
			Data      json.RawMessage `json:"data,omitempty"`
			UpdatedAt time.Time       `json:"at"`
			Deleted   bool            `json:"deleted,omitempty"`
		}(r))
		var old stateRecord
		if err := old.UnmarshalBinary(j); err != nil || !reflect.DeepEqual(old, r) {
			t.Errorf("UnmarshalBinary(%s) = %+v, %v", j, old, err)
		}
	}
}
