package embed

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
	"unicode"
)

// Hash is a deterministic hashing embedder of Dim dimensions: each
// lower-cased word of a text, and each character trigram of a word, is
// hashed (FNV-1a 64) to a dimension and a sign, and the sum is scaled to
// unit length. The same text always gets the same vector, on every
// machine; texts that share words score high. A text without a word gets
// a fixed vector of its own hash, so no embedding is the zero vector.
type Hash struct {
	Dim int
}

// Embed returns the embedding of each text.
func (h Hash) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	if h.Dim < 1 || h.Dim > maxDim {
		return nil, fmt.Errorf("embed: hash embedder of %d dimensions, want 1 to %d", h.Dim, maxDim)
	}
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i] = h.Vector(t)
	}
	return out, nil
}

// Vector returns the embedding of text.
func (h Hash) Vector(text string) []float32 {
	v := make([]float64, h.Dim)
	add := func(s string, w float64) {
		f := fnv.New64a()
		f.Write([]byte(s))
		x := f.Sum64()
		sign := 1.0
		if x>>63 == 1 {
			sign = -1
		}
		v[x%uint64(h.Dim)] += sign * w
	}
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	for _, w := range words {
		add("w:"+w, 1)
		r := []rune("^" + w + "$")
		for i := 0; i+3 <= len(r); i++ {
			add("t:"+string(r[i:i+3]), 0.25)
		}
	}
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	if norm == 0 {
		add("empty:"+text, 1)
		norm = 1
	}
	out := make([]float32, h.Dim)
	inv := 1 / math.Sqrt(norm)
	for i, x := range v {
		out[i] = float32(x * inv)
	}
	return out
}
