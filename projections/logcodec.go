package projections

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"github.com/tenantvault/tenantvault/events"
)

// The sealed log entry is the hottest value the store writes (one per
// event), so it has a compact binary encoding instead of JSON: re-encoding
// the event's data as JSON costs more than sealing it.
//
//	0x01 | uvarint version | uvarint partition | varint offset | varint stored-at (Unix ns)
//	     | bytes topic | bytes id | bytes source | bytes specversion | bytes type
//	     | bytes subject | bytes datacontenttype | bytes dataschema | bytes tenant
//	     | bytes time (time.MarshalBinary, empty = zero) | opt data | opt data_base64
//
// bytes = uvarint length + bytes; opt = 0x00 (absent) or 0x01 + bytes.
const logCodecV1 = 0x01

var (
	_ encoding.BinaryMarshaler   = logRecord{}
	_ encoding.BinaryUnmarshaler = (*logRecord)(nil)
)

var errMalformedLog = errors.New("malformed log record")

// MarshalBinary encodes r.
func (r logRecord) MarshalBinary() ([]byte, error) {
	e := &r.Event
	n := 64 + len(r.Topic) + len(e.ID) + len(e.Source) + len(e.SpecVersion) + len(e.Type) + len(e.Subject) +
		len(e.DataContentType) + len(e.DataSchema) + len(e.Tenant) + len(e.Data) + len(e.DataBase64)
	b := make([]byte, 0, n)
	b = append(b, logCodecV1)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendUvarint(b, uint64(r.Partition))
	b = binary.AppendVarint(b, r.Offset)
	b = binary.AppendVarint(b, r.StoredAt.UnixNano())
	for _, s := range []string{r.Topic, e.ID, e.Source, e.SpecVersion, e.Type, e.Subject, e.DataContentType, e.DataSchema, e.Tenant} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	var tb []byte
	if !e.Time.IsZero() {
		var err error
		if tb, err = e.Time.MarshalBinary(); err != nil {
			return nil, err
		}
	}
	b = binary.AppendUvarint(b, uint64(len(tb)))
	b = append(b, tb...)
	for _, d := range [][]byte{e.Data, e.DataBase64} {
		if d == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(d)))
		b = append(b, d...)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded. It copies what it
// keeps: the input is cleared by the caller.
func (r *logRecord) UnmarshalBinary(b []byte) error {
	if len(b) == 0 || b[0] != logCodecV1 {
		return errMalformedLog
	}
	d := logDecoder{b: b[1:]}
	r.Version = d.uvarint()
	r.Partition = int(d.uvarint())
	r.Offset = d.varint()
	r.StoredAt = time.Unix(0, d.varint()).UTC()
	e := events.Event{}
	for _, s := range []*string{&r.Topic, &e.ID, &e.Source, &e.SpecVersion, &e.Type, &e.Subject, &e.DataContentType, &e.DataSchema, &e.Tenant} {
		*s = string(d.bytes())
	}
	if tb := d.bytes(); len(tb) > 0 && d.err == nil {
		if err := e.Time.UnmarshalBinary(tb); err != nil {
			return errMalformedLog
		}
	}
	for _, dst := range []*[]byte{(*[]byte)(&e.Data), &e.DataBase64} {
		if d.byte() == 1 {
			*dst = append([]byte{}, d.bytes()...)
		}
	}
	if d.err != nil || len(d.b) != 0 {
		return errMalformedLog
	}
	r.Event = e
	return nil
}

type logDecoder struct {
	b   []byte
	err error
}

func (d *logDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err, d.b = errMalformedLog, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *logDecoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err, d.b = errMalformedLog, nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *logDecoder) byte() byte {
	if len(d.b) == 0 {
		d.err = errMalformedLog
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *logDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err, d.b = errMalformedLog, nil
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// The sealed state of a stream is rewritten by every transaction that
// touches the stream, so it too is binary:
//
//	0x02 | uvarint version | varint updated-at (Unix ns) | flags | bytes stream | [bytes data]
//
// flags: bit 0 deleted, bit 1 data present. States written as JSON by
// earlier versions (first byte '{') are still read.
const stateCodecV1 = 0x02

const (
	stateDeleted = 1 << iota
	stateHasData
)

var (
	_ encoding.BinaryMarshaler   = stateRecord{}
	_ encoding.BinaryUnmarshaler = (*stateRecord)(nil)
)

// MarshalBinary encodes r.
func (r stateRecord) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, 32+len(r.Stream)+len(r.Data))
	b = append(b, stateCodecV1)
	b = binary.AppendUvarint(b, r.Version)
	b = binary.AppendVarint(b, r.UpdatedAt.UnixNano())
	var flags byte
	if r.Deleted {
		flags |= stateDeleted
	}
	if r.Data != nil {
		flags |= stateHasData
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(r.Stream)))
	b = append(b, r.Stream...)
	if r.Data != nil {
		b = binary.AppendUvarint(b, uint64(len(r.Data)))
		b = append(b, r.Data...)
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary encoded, or the JSON encoding
// of earlier versions. It copies what it keeps.
func (r *stateRecord) UnmarshalBinary(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		type jsonState stateRecord // without this method
		var j jsonState
		if err := json.Unmarshal(b, &j); err != nil {
			return errMalformedLog
		}
		*r = stateRecord(j)
		return nil
	}
	if len(b) == 0 || b[0] != stateCodecV1 {
		return errMalformedLog
	}
	d := logDecoder{b: b[1:]}
	r.Version = d.uvarint()
	r.UpdatedAt = time.Unix(0, d.varint()).UTC()
	flags := d.byte()
	r.Deleted = flags&stateDeleted != 0
	r.Stream = string(d.bytes())
	r.Data = nil
	if flags&stateHasData != 0 {
		r.Data = append(json.RawMessage{}, d.bytes()...)
	}
	if d.err != nil || len(d.b) != 0 || flags&^(stateDeleted|stateHasData) != 0 {
		return errMalformedLog
	}
	return nil
}
