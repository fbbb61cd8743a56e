package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// --- helpers ---------------------------------------------------------------

// wireTestConn is a net.Conn over an in-memory reader and writer.
type wireTestConn struct {
	r io.Reader

	mu     sync.Mutex
	writes [][]byte
	closed bool
}

func (c *wireTestConn) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *wireTestConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *wireTestConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *wireTestConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *wireTestConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092}
}

func (c *wireTestConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *wireTestConn) SetDeadline(time.Time) error      { return nil }
func (c *wireTestConn) SetReadDeadline(time.Time) error  { return nil }
func (c *wireTestConn) SetWriteDeadline(time.Time) error { return nil }

func newTestWireConn(r io.Reader) (*wireConn, *wireTestConn) {
	tc := &wireTestConn{r: r}
	if tc.r == nil {
		tc.r = bytes.NewReader(nil)
	}
	return newWireConn(tc, slog.New(slog.DiscardHandler)), tc
}

// wireReqFrame is a request frame as observe sees it: size, api key,
// version, correlation id, then body (the rest of the request header and
// the request itself, opaque to observe).
func wireReqFrame(key, version int16, corr int32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	return append(b, body...)
}

// wireRawRequest encodes req as a Kafka client would: size, request header
// (v1, or v2 with an empty tagged-field section for flexible requests),
// body.
func wireRawRequest(req kmsg.Request, corr int32, clientID string) []byte {
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	if req.IsFlexible() {
		b = append(b, 0) // request header v2: no tagged fields
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	return b
}

// wireRespFrame encodes resp as kfake does for ApiVersions: size,
// correlation id (response header v0, never with tagged fields for
// ApiVersions), body.
func wireRespFrame(corr int32, resp kmsg.Response) []byte {
	b := make([]byte, 8, 256)
	b = resp.AppendTo(b)
	binary.BigEndian.PutUint32(b[:4], uint32(len(b)-4))
	binary.BigEndian.PutUint32(b[4:8], uint32(corr))
	return b
}

// decodeApiVersionsFrame decodes an ApiVersions response frame at version.
func decodeApiVersionsFrame(frame []byte, version int16) (*kmsg.ApiVersionsResponse, error) {
	if len(frame) < 8 {
		return nil, fmt.Errorf("frame of %d bytes", len(frame))
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	if err := resp.ReadFrom(frame[8:]); err != nil {
		return nil, err
	}
	return resp, nil
}

// sampleApiVersionsResponse is an ApiVersions response at version as kfake
// builds one, with SaslHandshake (17) advertised from saslMin, and every
// field the version has set to something other than its default.
func sampleApiVersionsResponse(version, saslMin int16, withSASL bool) *kmsg.ApiVersionsResponse {
	r := kmsg.NewPtrApiVersionsResponse()
	r.Version = version
	keys := [][3]int16{{0, 0, 11}, {1, 4, 17}, {3, 0, 12}, {17, saslMin, 1}, {18, 0, 4}, {36, 0, 2}, {60, 0, 1}}
	for _, k := range keys {
		if k[0] == 17 && !withSASL {
			continue
		}
		ak := kmsg.NewApiVersionsResponseApiKey()
		ak.ApiKey, ak.MinVersion, ak.MaxVersion = k[0], k[1], k[2]
		if version >= 3 && k[0] == 36 {
			ak.UnknownTags.Set(7, []byte("x"))
		}
		r.ApiKeys = append(r.ApiKeys, ak)
	}
	if version >= 1 {
		r.ThrottleMillis = 17
	}
	if version >= 3 {
		sf := kmsg.NewApiVersionsResponseSupportedFeature()
		sf.Name, sf.MinVersion, sf.MaxVersion = "metadata.version", 1, 27
		r.SupportedFeatures = append(r.SupportedFeatures, sf)
		ff := kmsg.NewApiVersionsResponseFinalizedFeature()
		ff.Name, ff.MinVersionLevel, ff.MaxVersionLevel = "metadata.version", 27, 27
		r.FinalizedFeatures = append(r.FinalizedFeatures, ff)
		r.FinalizedFeaturesEpoch = 4
		r.ZkMigrationReady = true
		r.UnknownTags.Set(9, []byte{1, 2, 3})
	}
	return r
}

// --- 1. observe ---------------------------------------------------------------

// wireTestStream is three well-formed request frames, the middle one an
// ApiVersions request, and a fourth, header-only one: 8 bytes after the
// size, the smallest a frame may announce. Bodies hold bytes that would
// read as an out-of-bounds length if observe lost track of the frames.
func wireTestStream() (stream []byte, want map[int32]int16) {
	var b []byte
	b = append(b, wireReqFrame(int16(kmsg.Metadata), 12, 7, bytes.Repeat([]byte{0xff}, 13))...)
	b = append(b, wireReqFrame(int16(kmsg.ApiVersions), 3, 42, []byte{0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 3, 0})...)
	b = append(b, wireReqFrame(int16(kmsg.Produce), 9, 8, []byte{0x40, 0, 0, 0, 0x80, 0, 0, 0})...)
	b = append(b, wireReqFrame(int16(kmsg.ApiVersions), 0, 43, nil)...)
	return b, map[int32]int16{42: 3, 43: 0}
}

func checkWireState(t *testing.T, c *wireConn, want map[int32]int16) {
	t.Helper()
	if c.hn != 0 || c.skip != 0 {
		t.Errorf("after whole frames: hn=%d skip=%d, want 0 0", c.hn, c.skip)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !reflect.DeepEqual(c.apiVersions, want) {
		t.Errorf("ApiVersions in flight = %v, want %v", c.apiVersions, want)
	}
}

func TestWireObserveChunks(t *testing.T) {
	stream, want := wireTestStream()
	for _, chunk := range []int{1, 2, 3, 5, 7, 11, len(stream)} {
		t.Run(fmt.Sprintf("chunks of %d", chunk), func(t *testing.T) {
			c, _ := newTestWireConn(nil)
			for i := 0; i < len(stream); i += chunk {
				if err := c.observe(stream[i:min(i+chunk, len(stream))]); err != nil {
					t.Fatalf("observe at byte %d: %v", i, err)
				}
			}
			checkWireState(t, c, want)
		})
	}
}

// TestWireObserveEverySplit feeds the stream cut at every pair of
// boundaries (three chunks, the first two possibly empty).
func TestWireObserveEverySplit(t *testing.T) {
	stream, want := wireTestStream()
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j++ {
			c, _ := newTestWireConn(nil)
			for _, part := range [][]byte{stream[:i], stream[i:j], stream[j:]} {
				if err := c.observe(part); err != nil {
					t.Fatalf("split at %d, %d: %v", i, j, err)
				}
			}
			if c.hn != 0 || c.skip != 0 {
				t.Fatalf("split at %d, %d: hn=%d skip=%d", i, j, c.hn, c.skip)
			}
			c.mu.Lock()
			got := inFlightString(c.apiVersions)
			c.mu.Unlock()
			if got != inFlightString(want) {
				t.Fatalf("split at %d, %d: ApiVersions in flight = %s, want %s", i, j, got, inFlightString(want))
			}
		}
	}
}

func inFlightString(m map[int32]int16) string { return fmt.Sprint(m) } // fmt sorts map keys

func TestWireObserveOutOfBounds(t *testing.T) {
	prefix, _ := wireTestStream()
	for _, size := range []int32{1 << 30, -1, math.MinInt32, -8, 0, 3, 7, MaxRequestBytes + 1, math.MaxInt32} {
		for _, lead := range [][]byte{nil, prefix} {
			for cut := 0; cut <= 4; cut++ {
				name := fmt.Sprintf("size %d after %d bytes, length cut at %d", size, len(lead), cut)
				c, _ := newTestWireConn(nil)
				if err := c.observe(lead); err != nil {
					t.Fatalf("%s: leading frames: %v", name, err)
				}
				frame := binary.BigEndian.AppendUint32(nil, uint32(size))
				frame = append(frame, 0, 18, 0, 3, 0, 0, 0, 1, 'x') // what may follow
				if err := c.observe(frame[:cut]); err != nil {
					if cut < 4 {
						t.Fatalf("%s: error before the length's 4 bytes arrived: %v", name, err)
					}
					if !errors.Is(err, errRequestTooLarge) {
						t.Fatalf("%s: %v, want errRequestTooLarge", name, err)
					}
					continue
				}
				err := c.observe(frame[cut:])
				if !errors.Is(err, errRequestTooLarge) {
					t.Fatalf("%s: %v, want errRequestTooLarge", name, err)
				}
				if cut < 4 {
					// Byte by byte too.
					c, _ := newTestWireConn(nil)
					var err error
					for i := 0; i < len(frame) && err == nil; i++ {
						err = c.observe(frame[i : i+1])
						if err != nil && i != 3 {
							t.Fatalf("%s: byte by byte: error at byte %d, want at byte 3: %v", name, i, err)
						}
					}
					if !errors.Is(err, errRequestTooLarge) {
						t.Fatalf("%s: byte by byte: %v, want errRequestTooLarge", name, err)
					}
				}
			}
		}
	}
}

// TestWireObserveBounds: the smallest and largest lengths allowed pass.
func TestWireObserveBounds(t *testing.T) {
	for _, size := range []int32{8, 9, MaxRequestBytes} {
		c, _ := newTestWireConn(nil)
		hdr := binary.BigEndian.AppendUint32(nil, uint32(size))
		hdr = append(hdr, 0, 3, 0, 12, 0, 0, 0, 5)
		if err := c.observe(hdr); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if c.skip != int64(size)-8 {
			t.Fatalf("size %d: skip %d, want %d", size, c.skip, size-8)
		}
	}
}

// TestWireConnReadOversized: Read hands kfake nothing of a frame whose
// length is out of bounds, and closes the connection.
func TestWireConnReadOversized(t *testing.T) {
	ok := wireReqFrame(int16(kmsg.Metadata), 12, 1, []byte("abc"))
	bad := append(binary.BigEndian.AppendUint32(nil, 1<<30), "abcd"...)
	c, tc := newTestWireConn(bytes.NewReader(append(bytes.Clone(ok), bad...)))
	got := make([]byte, len(ok))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, ok) {
		t.Fatalf("reading the well-formed frame: %q, %v", got, err)
	}
	n, err := c.Read(make([]byte, 4))
	if n != 0 || !errors.Is(err, errRequestTooLarge) {
		t.Fatalf("Read of the oversized length = %d, %v; want 0, errRequestTooLarge", n, err)
	}
	if !tc.isClosed() {
		t.Fatalf("connection not closed")
	}
}

// TestWireConnWritePatchesApiVersions: the response to an ApiVersions
// request seen on the read side is patched once, others pass unchanged.
func TestWireConnWritePatchesApiVersions(t *testing.T) {
	req := wireReqFrame(int16(kmsg.ApiVersions), 3, 42, []byte{0, 0, 0})
	c, tc := newTestWireConn(bytes.NewReader(req))
	if _, err := io.ReadFull(c, make([]byte, len(req))); err != nil {
		t.Fatal(err)
	}
	other := wireRespFrame(41, sampleApiVersionsResponse(3, 1, true))    // not an ApiVersions corr id
	resp := wireRespFrame(42, sampleApiVersionsResponse(3, 1, true))     // the answer
	again := wireRespFrame(42, sampleApiVersionsResponse(3, 1, true))    // corr id no longer in flight
	notWhole := wireRespFrame(42, sampleApiVersionsResponse(3, 1, true)) // size prefix does not match: not a whole frame
	binary.BigEndian.PutUint32(notWhole[:4], uint32(len(notWhole)))
	for _, p := range [][]byte{other, notWhole, resp, again} {
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(p))
		}
	}
	if len(tc.writes) != 4 {
		t.Fatalf("%d writes, want 4", len(tc.writes))
	}
	for i, p := range [][]byte{other, notWhole, nil, again} {
		if p != nil && !bytes.Equal(tc.writes[i], p) {
			t.Errorf("write %d was changed", i)
		}
	}
	got, err := decodeApiVersionsFrame(tc.writes[2], 3)
	if err != nil {
		t.Fatal(err)
	}
	if k := apiKey(got, 17); k == nil || k.MinVersion != 0 {
		t.Errorf("patched response: SaslHandshake %+v, want MinVersion 0", k)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.apiVersions) != 0 {
		t.Errorf("ApiVersions in flight after the answer: %v", c.apiVersions)
	}
}

func apiKey(r *kmsg.ApiVersionsResponse, key int16) *kmsg.ApiVersionsResponseApiKey {
	for i := range r.ApiKeys {
		if r.ApiKeys[i].ApiKey == key {
			return &r.ApiKeys[i]
		}
	}
	return nil
}

// --- 2. advertiseSASLHandshakeV0 -----------------------------------------

func TestAdvertiseSASLHandshakeV0(t *testing.T) {
	for v := int16(0); v <= 5; v++ {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			const corr = 0x01020304
			orig := sampleApiVersionsResponse(v, 1, true)
			frame := wireRespFrame(corr, orig)
			keep := bytes.Clone(frame)
			patched, ok := advertiseSASLHandshakeV0(frame, v)
			if !ok {
				t.Fatalf("not ok")
			}
			if !bytes.Equal(frame, keep) {
				t.Errorf("input frame modified")
			}
			if got := binary.BigEndian.Uint32(patched[:4]); int(got) != len(patched)-4 {
				t.Errorf("size prefix %d, frame of %d bytes after it", got, len(patched)-4)
			}
			if got := int32(binary.BigEndian.Uint32(patched[4:8])); got != corr {
				t.Errorf("correlation id %#x, want %#x", got, corr)
			}
			got, err := decodeApiVersionsFrame(patched, v)
			if err != nil {
				t.Fatalf("decode patched: %v", err)
			}
			want := sampleApiVersionsResponse(v, 0, true)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("patched response\n got %+v\nwant %+v", got, want)
			}
			if k := apiKey(got, 17); k == nil || k.MinVersion != 0 || k.MaxVersion != 1 {
				t.Errorf("SaslHandshake %+v, want versions 0-1", k)
			}
			// Byte for byte what kfake would have sent with v0 listed.
			if wantFrame := wireRespFrame(corr, want); !bytes.Equal(patched, wantFrame) {
				t.Errorf("patched frame\n %x\nwant\n %x", patched, wantFrame)
			}
			// Patching twice changes nothing more.
			if _, ok := advertiseSASLHandshakeV0(patched, v); ok {
				t.Errorf("patching the patched frame: ok")
			}
		})
	}
}

func TestAdvertiseSASLHandshakeV0Duplicates(t *testing.T) {
	r := sampleApiVersionsResponse(3, 1, true)
	dup := kmsg.NewApiVersionsResponseApiKey()
	dup.ApiKey, dup.MinVersion, dup.MaxVersion = 17, 1, 1
	r.ApiKeys = append(r.ApiKeys, dup)
	patched, ok := advertiseSASLHandshakeV0(wireRespFrame(5, r), 3)
	if !ok {
		t.Fatal("not ok")
	}
	got, err := decodeApiVersionsFrame(patched, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range got.ApiKeys {
		if k.ApiKey == 17 && k.MinVersion != 0 {
			t.Errorf("SaslHandshake entry %+v left", k)
		}
	}
}

func TestAdvertiseSASLHandshakeV0NotOK(t *testing.T) {
	type tc struct {
		name    string
		frame   []byte
		version int16
	}
	var cases []tc
	for v := int16(0); v <= 5; v++ {
		cases = append(cases,
			tc{fmt.Sprintf("v%d already from 0", v), wireRespFrame(1, sampleApiVersionsResponse(v, 0, true)), v},
			tc{fmt.Sprintf("v%d without SaslHandshake", v), wireRespFrame(1, sampleApiVersionsResponse(v, 1, false)), v},
			tc{fmt.Sprintf("v%d header only", v), make([]byte, 8), v},
		)
	}
	// kfake's answer to a version above the ones it serves: a v0 response
	// with UNSUPPORTED_VERSION and ApiVersions only, read here at the
	// request's version.
	down := kmsg.NewPtrApiVersionsResponse()
	down.ErrorCode = 35
	ak := kmsg.NewApiVersionsResponseApiKey()
	ak.ApiKey, ak.MaxVersion = 18, 5
	down.ApiKeys = append(down.ApiKeys, ak)
	for _, v := range []int16{0, 6, 7, 100} {
		cases = append(cases, tc{fmt.Sprintf("downgraded answer read as v%d", v), wireRespFrame(1, down), v})
	}
	cases = append(cases,
		tc{"garbage", append(make([]byte, 8), "not an ApiVersions response at all"...), 3},
		tc{"huge array", append(make([]byte, 8), 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 17), 0},
		tc{"huge compact array", append(make([]byte, 8), 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 17), 3},
		tc{"all ones", bytes.Repeat([]byte{0xff}, 64), 3},
	)
	for _, c := range cases {
		out, ok := advertiseSASLHandshakeV0(c.frame, c.version)
		if ok || out != nil {
			t.Errorf("%s: ok=%v out=%x, want not ok", c.name, ok, out)
		}
	}
	// Every strict truncation of a frame that would be patched.
	for v := int16(0); v <= 5; v++ {
		frame := wireRespFrame(1, sampleApiVersionsResponse(v, 1, true))
		for n := 8; n < len(frame); n++ {
			if out, ok := advertiseSASLHandshakeV0(frame[:n], v); ok {
				t.Errorf("v%d truncated to %d of %d bytes: ok (%x)", v, n, len(frame), out)
			}
		}
	}
}

// FuzzAdvertiseSASLHandshakeV0: never panics, never modifies its input,
// and whatever it patches re-decodes with only SaslHandshake's MinVersion
// changed.
func FuzzAdvertiseSASLHandshakeV0(f *testing.F) {
	for v := int16(0); v <= 5; v++ {
		f.Add(wireRespFrame(int32(v), sampleApiVersionsResponse(v, 1, true)), v)
	}
	f.Add(wireRespFrame(1, sampleApiVersionsResponse(3, 0, true)), int16(3))
	f.Add(wireRespFrame(1, sampleApiVersionsResponse(0, 1, false)), int16(0))
	f.Add(wireRespFrame(1, sampleApiVersionsResponse(0, 1, true)), int16(7))
	f.Add(append(make([]byte, 8), 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f), int16(3))
	f.Fuzz(func(t *testing.T, frame []byte, version int16) {
		keep := bytes.Clone(frame)
		out, ok := advertiseSASLHandshakeV0(frame, version)
		if !bytes.Equal(frame, keep) {
			t.Fatalf("input modified")
		}
		if !ok {
			if out != nil {
				t.Fatalf("not ok with output %x", out)
			}
			return
		}
		if int(binary.BigEndian.Uint32(out[:4])) != len(out)-4 {
			t.Fatalf("size prefix %d for %d bytes", binary.BigEndian.Uint32(out[:4]), len(out)-4)
		}
		if !bytes.Equal(out[4:8], frame[4:8]) {
			t.Fatalf("correlation id changed")
		}
		got, err := decodeApiVersionsFrame(out, version)
		if err != nil {
			t.Fatalf("patched output does not decode: %v", err)
		}
		want, err := decodeApiVersionsFrame(frame, version)
		if err != nil {
			t.Fatalf("ok for an input that does not decode: %v", err)
		}
		seen := false
		for i, k := range want.ApiKeys {
			if k.ApiKey == 17 {
				seen = seen || k.MinVersion > 0
				if k.MinVersion > 0 {
					want.ApiKeys[i].MinVersion = 0
				}
			}
		}
		if !seen {
			t.Fatalf("ok without a SaslHandshake entry to patch")
		}
		// Compared encoded: decoding yields nil or empty tag maps alike.
		if g, w := got.AppendTo(nil), want.AppendTo(nil); !bytes.Equal(g, w) {
			t.Fatalf("patched\n got %+v\nwant %+v", got, want)
		}
		if _, ok := advertiseSASLHandshakeV0(out, version); ok {
			t.Fatalf("patching the output again: ok")
		}
	})
}

// --- 3. oversized requests against a real broker ---------------------------

func TestOversizedRequestDisconnected(t *testing.T) {
	var logs logBuffer
	e, err := StartEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0", Logger: logs.logger(),
		Auth: &EmbeddedAuth{SuperUser: testSuperUser, SuperPassword: testSuperPass}})
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	super := Auth{User: testSuperUser, Password: testSuperPass}
	a, err := NewAdmin([]string{e.Addr()}, super)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b := &authBroker{e: e, admin: a, super: super}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := b.admin.ListTopics(ctx); err != nil { // warm up: connections, buffers
		t.Fatalf("ListTopics before: %v", err)
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// Three connections at once, each announcing a 1 GiB request: one in
	// a single write, one with the length split over two writes, one byte
	// by byte.
	const conns = 3
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	opened := make([]net.Conn, conns)
	for i := range conns {
		c, err := net.DialTimeout("tcp", e.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		opened[i] = c
		t.Cleanup(func() { _ = c.Close() })
	}
	for i, c := range opened {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- expectDisconnect(c, i, 1<<30)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	const slack = 256 << 20
	for _, m := range []struct {
		name          string
		before, after uint64
	}{
		{"HeapAlloc", before.HeapAlloc, after.HeapAlloc},
		{"TotalAlloc", before.TotalAlloc, after.TotalAlloc},
		{"Sys", before.Sys, after.Sys},
	} {
		if m.after > m.before+slack {
			t.Errorf("%s grew by %d MiB (from %d MiB to %d MiB): the broker allocated the announced request?",
				m.name, (m.after-m.before)>>20, m.before>>20, m.after>>20)
		}
	}

	// Other out-of-bounds lengths, one connection each.
	for _, size := range []int32{-1, math.MinInt32, 3, 0, MaxRequestBytes + 1} {
		c, err := net.DialTimeout("tcp", e.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := expectDisconnect(c, 0, size); err != nil {
			t.Error(err)
		}
		_ = c.Close()
	}

	if n := strings.Count(logs.String(), "request length is out of bounds"); n != conns+5 {
		t.Errorf("%d warnings about out-of-bounds lengths, want %d; log:\n%s", n, conns+5, logs.String())
	}

	// The broker still serves clients.
	if _, err := b.admin.ListTopics(ctx); err != nil {
		t.Fatalf("ListTopics after: %v", err)
	}
	b.mustAddProducer(t, "tenant-acme", "acme-password-0123456789", "tenant.acme.events")
	acme := b.client(t, Auth{User: "tenant-acme", Password: "acme-password-0123456789"})
	if err := produceOp("tenant.acme.events")(ctx, acme); err != nil {
		t.Fatalf("produce after: %v", err)
	}
}

// expectDisconnect writes a request announcing size bytes to c (how
// depends on mode: 0 one write, 1 the length split in two writes, 2 byte
// by byte) and checks the broker closes c within a few seconds.
func expectDisconnect(c net.Conn, mode int, size int32) error {
	msg := binary.BigEndian.AppendUint32(nil, uint32(size))
	msg = append(msg, 0, 18, 0, 3, 0, 0, 0, 1) // an ApiVersions header, as if
	var parts [][]byte
	switch mode {
	case 0:
		parts = [][]byte{msg}
	case 1:
		parts = [][]byte{msg[:2], msg[2:]}
	default:
		for i := range msg {
			parts = append(parts, msg[i:i+1])
		}
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, p := range parts {
		if _, err := c.Write(p); err != nil {
			break // already closed by the broker: fine
		}
		if len(parts) > 1 {
			time.Sleep(20 * time.Millisecond) // separate reads on the broker's side
		}
	}
	start := time.Now()
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case err == nil:
		return fmt.Errorf("size %d (mode %d): read %d bytes, want the connection closed", size, mode, n)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("size %d (mode %d): connection still open after %s", size, mode, time.Since(start).Round(time.Millisecond))
	}
	return nil // EOF or connection reset
}

// --- 4. ApiVersions over the wire ----------------------------------------

// TestApiVersionsRawAdvertisesSASLHandshakeV0 sends ApiVersions requests
// of every version, encoded by hand, to the authenticating broker (before
// any authentication) and checks SaslHandshake is listed from v0.
func TestApiVersionsRawAdvertisesSASLHandshakeV0(t *testing.T) {
	b := mustStartAuthBroker(t, "")
	c, err := net.DialTimeout("tcp", b.e.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))

	corr := int32(1000)
	roundTrip := func(req *kmsg.ApiVersionsRequest, respVersion int16) *kmsg.ApiVersionsResponse {
		t.Helper()
		corr++
		if _, err := c.Write(wireRawRequest(req, corr, "rdkafka")); err != nil {
			t.Fatalf("v%d: write: %v", req.Version, err)
		}
		frame, err := readRespFrame(c)
		if err != nil {
			t.Fatalf("v%d: read response: %v", req.Version, err)
		}
		if got := int32(binary.BigEndian.Uint32(frame[4:8])); got != corr {
			t.Fatalf("v%d: response correlation id %d, want %d", req.Version, got, corr)
		}
		resp, err := decodeApiVersionsFrame(frame, respVersion)
		if err != nil {
			t.Fatalf("v%d: decode response as v%d: %v", req.Version, respVersion, err)
		}
		return resp
	}

	// librdkafka's first request: v3, then the others.
	for _, v := range []int16{3, 0, 1, 2, 4, 5} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = v
		req.ClientSoftwareName, req.ClientSoftwareVersion = "librdkafka", "2.6.1"
		resp := roundTrip(req, v)
		if resp.ErrorCode != 0 {
			t.Fatalf("v%d: error code %d", v, resp.ErrorCode)
		}
		k := apiKey(resp, int16(kmsg.SASLHandshake))
		if k == nil || k.MinVersion != 0 || k.MaxVersion < 1 {
			t.Errorf("v%d: SaslHandshake %+v, want from v0 to at least v1", v, k)
		}
		if a := apiKey(resp, int16(kmsg.SASLAuthenticate)); a == nil {
			t.Errorf("v%d: SaslAuthenticate not advertised", v)
		}
		if a := apiKey(resp, int16(kmsg.ApiVersions)); a == nil || a.MinVersion != 0 {
			t.Errorf("v%d: ApiVersions %+v", v, a)
		}
		if v >= 3 && len(resp.SupportedFeatures) == 0 {
			t.Errorf("v%d: no supported features (response fields lost?)", v)
		}
	}

	// A version above kfake's: answered with a v0 response carrying
	// UNSUPPORTED_VERSION, which must reach the client intact.
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 7
	req.ClientSoftwareName, req.ClientSoftwareVersion = "librdkafka", "2.6.1"
	resp := roundTrip(req, 0)
	if resp.ErrorCode != 35 {
		t.Errorf("v7: error code %d, want 35 (UNSUPPORTED_VERSION)", resp.ErrorCode)
	}
	if a := apiKey(resp, int16(kmsg.ApiVersions)); a == nil || a.MaxVersion < 3 {
		t.Errorf("v7: ApiVersions %+v in the downgraded answer", a)
	}
}

// TestApiVersionsKgoAdvertisesSASLHandshakeV0: a franz-go client sees the
// same.
func TestApiVersionsKgoAdvertisesSASLHandshakeV0(t *testing.T) {
	b := mustStartAuthBroker(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, a := range []Auth{b.super, {}} {
		cl := b.client(t, a)
		resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
		if err != nil {
			t.Fatalf("as %q: %v", a.User, err)
		}
		if k := apiKey(resp, int16(kmsg.SASLHandshake)); k == nil || k.MinVersion != 0 {
			t.Errorf("as %q: SaslHandshake %+v, want MinVersion 0", a.User, k)
		}
	}
}

// readRespFrame reads one response frame (size included) from c.
func readRespFrame(c net.Conn) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return nil, fmt.Errorf("response of %d bytes", n)
	}
	frame := make([]byte, 4+n)
	copy(frame, size[:])
	if _, err := io.ReadFull(c, frame[4:]); err != nil {
		return nil, err
	}
	return frame, nil
}
