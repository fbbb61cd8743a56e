package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// MaxRequestBytes bounds one request on the embedded broker's wire, as
// Kafka's socket.request.max.bytes does (its default): a client that
// announces a larger one is disconnected before anything is allocated for
// it.
const MaxRequestBytes = 100 << 20

// wireConn is a connection to the embedded broker, seen by a thin layer
// in front of kfake. It watches the request frames a client sends (length,
// API key, version, correlation id) and:
//
//   - disconnects a client whose request length is negative or above
//     MaxRequestBytes, before kfake reads (and allocates) the body;
//   - advertises SaslHandshake from version 0 in ApiVersions responses.
//     kfake serves SaslHandshake v1 (with SaslAuthenticate) and advertises
//     it as v1-v1; librdkafka (kcat, confluent-kafka-*) enables SASL only
//     when the broker lists v0, and then uses v1 with SaslAuthenticate. A
//     client that really sends v0 is refused by kfake as before.
//
// kfake writes each response with one Write call of the whole frame, which
// is what lets responses be patched in place.
type wireConn struct {
	net.Conn
	log *slog.Logger

	// read side, only touched by Read
	hdr  [12]byte // size, api key, api version, correlation id
	hn   int      // bytes of hdr seen in the current frame
	skip int64    // bytes of the current frame's body still to pass

	mu          sync.Mutex
	apiVersions map[int32]int16 // correlation id -> request version of ApiVersions requests in flight
}

func newWireConn(c net.Conn, log *slog.Logger) *wireConn {
	return &wireConn{Conn: c, log: log, apiVersions: make(map[int32]int16)}
}

var errRequestTooLarge = errors.New("request too large")

func (c *wireConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if oerr := c.observe(p[:n]); oerr != nil {
		c.Conn.Close()
		return 0, oerr
	}
	return n, err
}

// observe follows the request frames in b, read from the client.
func (c *wireConn) observe(b []byte) error {
	for len(b) > 0 {
		if c.skip > 0 {
			k := int64(len(b))
			if k > c.skip {
				k = c.skip
			}
			c.skip -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.hn:], b)
		c.hn += k
		b = b[k:]
		if c.hn == 4 || (c.hn > 4 && c.hn-k < 4) {
			size := int32(binary.BigEndian.Uint32(c.hdr[:4]))
			if size < 8 || size > MaxRequestBytes {
				c.log.Warn("embedded broker: disconnected a client whose request length is out of bounds", "client", c.RemoteAddr().String(), "bytes", size, "max", MaxRequestBytes)
				return fmt.Errorf("%w: %d bytes", errRequestTooLarge, size)
			}
		}
		if c.hn < len(c.hdr) {
			continue
		}
		size := int64(binary.BigEndian.Uint32(c.hdr[:4]))
		key := int16(binary.BigEndian.Uint16(c.hdr[4:6]))
		version := int16(binary.BigEndian.Uint16(c.hdr[6:8]))
		corr := int32(binary.BigEndian.Uint32(c.hdr[8:12]))
		if key == int16(kmsg.ApiVersions) {
			c.mu.Lock()
			c.apiVersions[corr] = version
			c.mu.Unlock()
		}
		c.skip = size - 8 // the body after key, version and correlation id
		c.hn = 0
	}
	return nil
}

func (c *wireConn) Write(p []byte) (int, error) {
	if len(p) >= 8 && int(binary.BigEndian.Uint32(p[:4])) == len(p)-4 {
		corr := int32(binary.BigEndian.Uint32(p[4:8]))
		c.mu.Lock()
		version, ok := c.apiVersions[corr]
		delete(c.apiVersions, corr)
		c.mu.Unlock()
		if ok {
			if patched, ok := advertiseSASLHandshakeV0(p, version); ok {
				if _, err := c.Conn.Write(patched); err != nil {
					return 0, err
				}
				return len(p), nil
			}
		}
	}
	return c.Conn.Write(p)
}

// advertiseSASLHandshakeV0 rewrites an ApiVersions response frame so that
// SaslHandshake is listed from version 0; ok is false when frame is not one
// it can decode (it is then sent as it is).
func advertiseSASLHandshakeV0(frame []byte, version int16) ([]byte, bool) {
	if len(frame) < 8 {
		return nil, false
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	if err := resp.ReadFrom(frame[8:]); err != nil {
		return nil, false
	}
	changed := false
	for i := range resp.ApiKeys {
		if resp.ApiKeys[i].ApiKey == int16(kmsg.SASLHandshake) && resp.ApiKeys[i].MinVersion > 0 {
			resp.ApiKeys[i].MinVersion = 0
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	out := append([]byte(nil), frame[:8]...)
	out = resp.AppendTo(out)
	binary.BigEndian.PutUint32(out[:4], uint32(len(out)-4))
	return out, true
}
