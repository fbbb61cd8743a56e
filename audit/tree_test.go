package audit

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

func TestHashChildren(t *testing.T) {
	l, r := sha256.Sum256([]byte("l")), sha256.Sum256([]byte("r"))
	got := hashChildren(l, r)
	if want := rfc6962.DefaultHasher.HashChildren(l[:], r[:]); !bytes.Equal(got[:], want) {
		t.Errorf("hashChildren = %x, want %x", got, want)
	}
	if want := rfc6962.DefaultHasher.EmptyRoot(); !bytes.Equal(emptyRoot[:], want) {
		t.Errorf("emptyRoot = %x, want %x", emptyRoot, want)
	}
	leaf := []byte(`{"index":0}`)
	if h := LeafHash(leaf); !bytes.Equal(h[:], rfc6962.DefaultHasher.HashLeaf(leaf)) {
		t.Errorf("LeafHash = %x, want rfc6962 HashLeaf", h)
	}
}

// memTree builds our tree and the merkle module's reference tree over n
// leaves, with readBlock served from memory.
func memTree(n int) (*tree, *testonly.Tree, [][HashSize]byte) {
	var tr tree
	ref := testonly.New(rfc6962.DefaultHasher)
	var leaves [][HashSize]byte
	for i := range n {
		leaf := fmt.Appendf(nil, "leaf %d", i)
		h := LeafHash(leaf)
		leaves = append(leaves, h)
		tr.append(h)
		ref.AppendData(leaf)
	}
	return &tr, ref, leaves
}

func memView(tr *tree, leaves [][HashSize]byte) *treeView {
	v := tr.view()
	v.readBlock = func(b uint64) ([][HashSize]byte, error) {
		return leaves[b*blockSize : (b+1)*blockSize], nil
	}
	return v
}

// TestTreeMatchesReference compares roots and every inclusion and
// consistency proof with the merkle module's reference implementation, for
// trees that end inside, at and after block and power-of-two boundaries.
func TestTreeMatchesReference(t *testing.T) {
	const max = 3*blockSize + 5
	tr, ref, leaves := memTree(max)
	v := memView(tr, leaves)
	for size := uint64(0); size <= max; size++ {
		root, err := v.root(size)
		if err != nil || !bytes.Equal(root[:], ref.HashAt(size)) {
			t.Fatalf("root(%d) = %x, %v; want %x", size, root, err, ref.HashAt(size))
		}
	}
	sizes := []uint64{1, 2, 3, 7, 8, 63, 64, 65, 127, 128, 129, 130, 191, 192, max}
	for _, size := range sizes {
		for index := range size {
			got, err := v.inclusion(index, size)
			want, _ := ref.InclusionProof(index, size)
			if err != nil || !equalProofs(got, want) {
				t.Fatalf("inclusion(%d, %d) = %x, %v; want %x", index, size, got, err, want)
			}
		}
		for _, from := range sizes {
			if from > size {
				continue
			}
			got, err := v.consistency(from, size)
			want, _ := ref.ConsistencyProof(from, size)
			if err != nil || !equalProofs(got, want) {
				t.Fatalf("consistency(%d, %d) = %x, %v; want %x", from, size, got, err, want)
			}
		}
	}
	// The current root needs no block read.
	small := tr.view()
	if _, err := small.root(max); err != nil {
		t.Errorf("root of the whole tree without block reads: %v", err)
	}
	if got := tr.root(); !bytes.Equal(got[:], ref.Hash()) {
		t.Errorf("tree.root() = %x, want %x", got, ref.Hash())
	}
}

func equalProofs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestTreeBlockChecked: a block read back with other contents than were
// appended is an *InconsistentError, not a wrong proof.
func TestTreeBlockChecked(t *testing.T) {
	tr, _, leaves := memTree(2 * blockSize)
	v := tr.view()
	v.readBlock = func(b uint64) ([][HashSize]byte, error) {
		bad := append([][HashSize]byte(nil), leaves[b*blockSize:(b+1)*blockSize]...)
		bad[5][0] ^= 1
		return bad, nil
	}
	_, err := v.inclusion(blockSize+3, 2*blockSize)
	checkInconsistent(t, "inclusion over a changed block", err, blockSize)
}

func TestTreeMemory(t *testing.T) {
	tr, _, _ := memTree(100 * blockSize)
	var stored int
	for _, l := range tr.levels {
		stored += len(l)
	}
	// n/64 + n/128 + ... < n/32 hashes: about one byte per record.
	if want := 100 * blockSize / 32; stored > want {
		t.Errorf("tree of %d leaves keeps %d hashes, want at most %d", tr.size, stored, want)
	}
}
