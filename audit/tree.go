package audit

import (
	"crypto/sha256"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// The Merkle tree over the log is the RFC 6962 tree whose leaves are the
// records' canonical bytes. The Log keeps, in memory, the hash of every
// complete node at level blockLevel and above (about one byte per record),
// and the leaf hashes of the records after the last complete block. A node
// below blockLevel inside a complete block is recomputed from that block's
// records, read from the segment files with one read per segment and checked
// against the block's stored hash. A proof touches at most a few blocks, so
// it costs a few small reads and about a hundred hashes, whatever the size of
// the log.
const (
	blockLevel = 6
	blockSize  = 1 << blockLevel
)

// emptyRoot is the root hash of the empty tree: SHA-256 of nothing.
var emptyRoot = [HashSize]byte(sha256.Sum256(nil))

// hashChildren returns the RFC 6962 hash of an interior node:
// SHA-256(0x01 || left || right).
func hashChildren(left, right [HashSize]byte) [HashSize]byte {
	var b [1 + 2*HashSize]byte
	b[0] = rfc6962.RFC6962NodeHashPrefix
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// hashChildrenSlices is hashChildren for proof.Nodes.Rehash.
func hashChildrenSlices(left, right []byte) []byte {
	h := hashChildren([HashSize]byte(left), [HashSize]byte(right))
	return h[:]
}

// perfectRoot returns the root of the perfect subtree over hs, whose length
// must be a power of two. It uses scratch (len(hs)/2 entries) as workspace.
func perfectRoot(hs [][HashSize]byte, scratch [][HashSize]byte) [HashSize]byte {
	if len(hs) == 1 {
		return hs[0]
	}
	n := len(hs) / 2
	for i := range n {
		scratch[i] = hashChildren(hs[2*i], hs[2*i+1])
	}
	for ; n > 1; n /= 2 {
		for i := range n / 2 {
			scratch[i] = hashChildren(scratch[2*i], scratch[2*i+1])
		}
	}
	return scratch[0]
}

// tree is the Log's Merkle tree. The writer appends to it under Log.mu;
// readers take a treeView.
type tree struct {
	size uint64
	// levels[k] holds the hashes of the complete nodes at level
	// blockLevel+k, left to right. The slices are only ever appended to.
	levels [][][HashSize]byte
	// tail holds the leaf hashes of the records after the last complete
	// block: size % blockSize of them. It is reused in place, so readers
	// copy it.
	tail    [][HashSize]byte
	scratch [blockSize / 2][HashSize]byte
}

// append adds the leaf hash of record t.size.
func (t *tree) append(leaf [HashSize]byte) {
	t.tail = append(t.tail, leaf)
	t.size++
	if len(t.tail) < blockSize {
		return
	}
	h := perfectRoot(t.tail, t.scratch[:])
	t.tail = t.tail[:0]
	for k := 0; ; k++ {
		if k == len(t.levels) {
			t.levels = append(t.levels, nil)
		}
		t.levels[k] = append(t.levels[k], h)
		n := len(t.levels[k])
		if n%2 == 1 {
			return
		}
		h = hashChildren(t.levels[k][n-2], t.levels[k][n-1])
	}
}

// root returns the root hash of the whole tree (no disk reads: the nodes
// below blockLevel that it needs are all in the tail).
func (t *tree) root() [HashSize]byte {
	v := t.view()
	r, err := v.root(t.size)
	if err != nil {
		panic(fmt.Sprintf("audit: tree root needs a block read: %v", err)) // cannot happen: see node
	}
	return r
}

// view returns a snapshot of t that stays valid while the writer appends.
// The caller holds Log.mu (for reading at least).
func (t *tree) view() *treeView {
	v := &treeView{size: t.size, levels: make([][][HashSize]byte, len(t.levels))}
	for k, l := range t.levels {
		v.levels[k] = l[:len(l):len(l)]
	}
	v.tail = append([][HashSize]byte(nil), t.tail...)
	return v
}

// treeView is a snapshot of the tree at size. readBlock, if set, returns
// the leaf hashes of complete block b (records b·blockSize to
// (b+1)·blockSize-1); without it, nodes inside complete blocks below
// blockLevel cannot be computed.
type treeView struct {
	size      uint64
	levels    [][][HashSize]byte
	tail      [][HashSize]byte
	readBlock func(b uint64) ([][HashSize]byte, error)
	blocks    map[uint64]*blockNodes // blocks read for this view
}

// blockNodes holds every node of one complete block: nodes[k] are those at
// level k, left to right (nodes[0] the leaf hashes, nodes[blockLevel] the
// block's root).
type blockNodes [blockLevel + 1][][HashSize]byte

func newBlockNodes(leaves [][HashSize]byte) *blockNodes {
	var bn blockNodes
	bn[0] = leaves
	for k := 1; k <= blockLevel; k++ {
		below := bn[k-1]
		bn[k] = make([][HashSize]byte, len(below)/2)
		for i := range bn[k] {
			bn[k][i] = hashChildren(below[2*i], below[2*i+1])
		}
	}
	return &bn
}

// node returns the hash of node (level, index), which must be complete
// within the view (cover no leaf at or past v.size).
func (v *treeView) node(id compact.NodeID) ([HashSize]byte, error) {
	if id.Level >= 64 || (id.Index+1)<<id.Level > v.size || (id.Index+1)<<id.Level>>id.Level != id.Index+1 {
		return [HashSize]byte{}, fmt.Errorf("audit: node %d/%d is not in a tree of size %d", id.Level, id.Index, v.size)
	}
	if id.Level >= blockLevel {
		return v.levels[id.Level-blockLevel][id.Index], nil
	}
	first := id.Index << id.Level
	b := first >> blockLevel
	off := first - b<<blockLevel
	if b == v.size>>blockLevel { // in the tail: at most a few dozen hashes
		var scratch [blockSize / 2][HashSize]byte
		return perfectRoot(v.tail[off:off+1<<id.Level], scratch[:]), nil
	}
	bn, err := v.block(b)
	if err != nil {
		return [HashSize]byte{}, err
	}
	return bn[id.Level][off>>id.Level], nil
}

// block returns the nodes of complete block b, checked against the block's
// stored hash.
func (v *treeView) block(b uint64) (*blockNodes, error) {
	if bn, ok := v.blocks[b]; ok {
		return bn, nil
	}
	if v.readBlock == nil {
		return nil, fmt.Errorf("audit: block %d is not in memory", b)
	}
	leaves, err := v.readBlock(b)
	if err != nil {
		return nil, err
	}
	if len(leaves) != blockSize {
		return nil, fmt.Errorf("audit: block %d has %d records", b, len(leaves))
	}
	bn := newBlockNodes(leaves)
	if got, want := bn[blockLevel][0], v.levels[0][b]; got != want {
		first := b << blockLevel
		return nil, &InconsistentError{At: first,
			Want: fmt.Sprintf("records %d to %d hashing to subtree %x, as when they were written", first, first+blockSize-1, want),
			Got:  fmt.Sprintf("subtree %x: one of them changed on disk", got), Offset: -1}
	}
	if v.blocks == nil {
		v.blocks = make(map[uint64]*blockNodes)
	}
	v.blocks[b] = bn
	return bn, nil
}

// root returns the root hash of the tree of the first size leaves.
func (v *treeView) root(size uint64) ([HashSize]byte, error) {
	if size == 0 {
		return emptyRoot, nil
	}
	ids := compact.RangeNodes(0, size, nil)
	h, err := v.node(ids[len(ids)-1])
	if err != nil {
		return h, err
	}
	for i := len(ids) - 2; i >= 0; i-- {
		n, err := v.node(ids[i])
		if err != nil {
			return h, err
		}
		h = hashChildren(n, h)
	}
	return h, nil
}

// proof returns the hashes of nodes, rehashed into a proof.
func (v *treeView) proof(nodes proof.Nodes) ([][]byte, error) {
	hs := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := v.node(id)
		if err != nil {
			return nil, err
		}
		hs[i] = h[:]
	}
	return nodes.Rehash(hs, hashChildrenSlices)
}

// inclusion returns the inclusion proof of leaf index in the tree of size
// leaves (RFC 9162 section 2.1.3).
func (v *treeView) inclusion(index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return v.proof(nodes)
}

// consistency returns the consistency proof from size1 to size2 (RFC 9162
// section 2.1.4).
func (v *treeView) consistency(size1, size2 uint64) ([][]byte, error) {
	if size1 == 0 && size2 >= size1 {
		// Every tree extends the empty one: the proof is empty (merkle
		// after v0.0.2 refuses to make it).
		return [][]byte{}, nil
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return v.proof(nodes)
}
