package keys

import (
	"fmt"
	"time"
)

// slot is what a TenantCipher holds: its unwrapped keys until expires (a
// ks.now() value), or nothing. Slots are never mutated; each state change
// stores a fresh one, so a compare-and-swap can tell whether anything
// happened since a slot was read.
type slot struct {
	keys    *tenantKeys // nil: not in memory
	expires int64
}

// destroyedSlot marks a destroyed tenant's cipher. It is stored once, by
// Destroy, and never replaced: every other writer compare-and-swaps from the
// slot it read, which can never be destroyedSlot.
var destroyedSlot = &slot{}

// touchGranularity limits how often a use updates lastUsed (a shared write).
const touchGranularity = int64(time.Millisecond)

// current returns c's keys, unwrapping them when they are not in memory or
// expired.
func (c *TenantCipher) current() (*tenantKeys, error) {
	if c == nil || c.ks == nil {
		return nil, errNoKeys
	}
	s := c.slot.Load()
	if s.keys != nil {
		now := c.ks.now()
		if now < s.expires {
			if now-c.lastUsed.Load() > touchGranularity {
				c.lastUsed.Store(now)
			}
			return s.keys, nil
		}
	}
	return c.ks.fill(c)
}

// fill unwraps c's keys into its slot, unless another caller did first, the
// tenant was destroyed or the keystore closed.
func (ks *Keystore) fill(c *TenantCipher) (*tenantKeys, error) {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	for {
		s := c.slot.Load()
		if s == destroyedSlot {
			return nil, fmt.Errorf("keys of tenant %s: %w", c.tenant, ErrDestroyed)
		}
		now := ks.now()
		if s.keys != nil && now < s.expires {
			return s.keys, nil
		}
		if ks.state.Load().closed {
			return nil, errClosed
		}
		k, err := ks.unwrapTenant(c)
		if err != nil {
			if c.slot.Load() == destroyedSlot { // its file went with it
				return nil, fmt.Errorf("keys of tenant %s: %w", c.tenant, ErrDestroyed)
			}
			return nil, err
		}
		now = ks.now()
		ns := &slot{keys: k, expires: now + ks.ttl}
		if !c.slot.CompareAndSwap(s, ns) {
			continue // rotated, destroyed or evicted meanwhile: look again
		}
		if !k.meta().equal(c.meta.Load()) {
			// The file was replaced behind the keystore's back (e.g. by an
			// older copy): its keys are not those the index holds.
			c.slot.CompareAndSwap(ns, &slot{})
			return nil, fmt.Errorf("keyset %s changed on disk since the keystore opened it: its keys are not those the keystore indexed; reopen the keystore", ks.path(c.tenant))
		}
		c.lastUsed.Store(now)
		ks.cacheAdd(c)
		if ks.state.Load().closed {
			c.slot.CompareAndSwap(ns, &slot{})
			return nil, errClosed
		}
		return k, nil
	}
}

// install puts k into c's slot (after Create, Rotate or a key change) and
// into the cache. ks.mu must be held, so c is not destroyed meanwhile.
func (ks *Keystore) install(c *TenantCipher, k *tenantKeys) {
	now := ks.now()
	c.slot.Store(&slot{keys: k, expires: now + ks.ttl})
	c.meta.Store(k.meta())
	c.lastUsed.Store(now)
	ks.cacheAdd(c)
}

// cacheAdd records that c holds keys, and evicts the least recently used
// other ciphers while more than ks.size do.
func (ks *Keystore) cacheAdd(c *TenantCipher) {
	ks.cacheMu.Lock()
	defer ks.cacheMu.Unlock()
	ks.cached[c] = struct{}{}
	for len(ks.cached) > ks.size {
		var victim *TenantCipher
		for o := range ks.cached {
			if o != c && (victim == nil || o.lastUsed.Load() < victim.lastUsed.Load()) {
				victim = o
			}
		}
		if victim == nil {
			return
		}
		ks.evictLocked(victim)
	}
}

// evictLocked drops c's keys from memory (unless it was destroyed, which
// dropped them already). ks.cacheMu must be held.
func (ks *Keystore) evictLocked(c *TenantCipher) {
	for {
		s := c.slot.Load()
		if s == destroyedSlot || s.keys == nil || c.slot.CompareAndSwap(s, &slot{}) {
			break
		}
	}
	delete(ks.cached, c)
}

// DropCache drops every unwrapped keyset from memory: each tenant's next use
// unwraps its keyset again, from disk and through the KMS. Use it after
// revoking a KMS key, to make the revocation bite at once.
func (ks *Keystore) DropCache() {
	ks.cacheMu.Lock()
	defer ks.cacheMu.Unlock()
	for c := range ks.cached {
		ks.evictLocked(c)
	}
}

// uncache forgets c (destroyed). Its slot is handled by the caller.
func (ks *Keystore) uncache(c *TenantCipher) {
	ks.cacheMu.Lock()
	delete(ks.cached, c)
	ks.cacheMu.Unlock()
}

// sweepInterval is how often expired keys are dropped from memory: a
// quarter of the TTL, between 1ms and 1 minute. An idle tenant's keys stay
// in memory at most CacheTTL plus this.
func (ks *Keystore) sweepInterval() time.Duration {
	return min(max(time.Duration(ks.ttl)/4, time.Millisecond), time.Minute)
}

// sweep drops expired keys from memory, then runs again later.
func (ks *Keystore) sweep() {
	ks.cacheMu.Lock()
	defer ks.cacheMu.Unlock()
	if ks.sweeper == nil {
		return // closed
	}
	now := ks.now()
	for c := range ks.cached {
		if s := c.slot.Load(); s == destroyedSlot || s.keys == nil || now >= s.expires {
			ks.evictLocked(c)
		}
	}
	ks.sweeper.Reset(ks.sweepInterval())
}

// cachedCount returns how many tenants' keys are in memory, for tests.
func (ks *Keystore) cachedCount() int {
	ks.cacheMu.Lock()
	defer ks.cacheMu.Unlock()
	n := 0
	for c := range ks.cached {
		if s := c.slot.Load(); s != destroyedSlot && s.keys != nil {
			n++
		}
	}
	return n
}
