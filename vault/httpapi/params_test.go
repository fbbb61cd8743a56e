package httpapi

import (
	"math"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

func TestParams(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	type got struct {
		Limit     int
		After     uint64
		Size      uint64
		SizeGiven bool
		Index     uint64
		Since     time.Time
		Flagged   bool
		Cursor    string
	}
	read := func(p *params) got {
		var g got
		g.Limit = p.Limit()
		g.After = p.Uint("after", 7)
		g.Size, g.SizeGiven = p.OptUint("size")
		g.Index = p.RequiredUint("index")
		g.Since = p.Time("since")
		g.Flagged = p.Bool("flagged")
		g.Cursor = p.String("cursor")
		return g
	}
	tests := []struct {
		query   string
		want    got
		wantErr string // the error's message; "" for none
	}{
		{query: "index=0", want: got{Limit: defaultLimit, After: 7, Index: 0}},
		{
			query: "index=3&limit=1000&after=0&size=" + "18446744073709551615" + "&since=2025-01-02T03:04:05.000000006Z&flagged=true&cursor=c1",
			want:  got{Limit: maxLimit, After: 0, Size: math.MaxUint64, SizeGiven: true, Index: 3, Since: at, Flagged: true, Cursor: "c1"},
		},
		{query: "index=1&limit=1", want: got{Limit: 1, After: 7, Index: 1}},
		{query: "index=1&flagged=yes", want: got{Limit: defaultLimit, After: 7, Index: 1}},
		{query: "index=1&limit=0", wantErr: "query parameter limit must be an integer from 1 to 1000"},
		{query: "index=1&limit=1001", wantErr: "query parameter limit must be an integer from 1 to 1000"},
		{query: "index=1&limit=-1", wantErr: "query parameter limit must be an integer from 1 to 1000"},
		{query: "index=1&limit=abc", wantErr: "query parameter limit must be an integer from 1 to 1000"},
		{query: "index=1&after=-1", wantErr: "query parameter after must be a non-negative integer"},
		{query: "index=1&size=18446744073709551616", wantErr: "query parameter size must be a non-negative integer"},
		{query: "", wantErr: "query parameter index must be a non-negative integer"},
		{query: "index=", wantErr: "query parameter index must be a non-negative integer"},
		{query: "index=x", wantErr: "query parameter index must be a non-negative integer"},
		{query: "index=1&since=yesterday", wantErr: "query parameter since must be an RFC 3339 time"},
		// The first bad parameter is the one named.
		{query: "limit=0&after=x&since=y", wantErr: "query parameter limit must be an integer from 1 to 1000"},
		{query: "after=x&since=y", wantErr: "query parameter after must be a non-negative integer"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			p := queryParams(httptest.NewRequest("GET", "/v1/x?"+tt.query, nil))
			g := read(p)
			err := p.Err()
			if tt.wantErr != "" {
				if events.ErrorCode(err) != events.EINVALID || events.ErrorMessage(err) != tt.wantErr {
					t.Fatalf("params(%q).Err() = %v (code %q), want %s %q", tt.query, err, events.ErrorCode(err), events.EINVALID, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("params(%q).Err() = %v, want nil", tt.query, err)
			}
			if !reflect.DeepEqual(g, tt.want) {
				t.Errorf("params(%q) = %+v, want %+v", tt.query, g, tt.want)
			}
		})
	}
}
