package vault

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tenantvault/tenantvault/audit"
	"github.com/tenantvault/tenantvault/events"
	"github.com/tenantvault/tenantvault/projections"
)

// KeyInfo describes one key of a tenant.
type KeyInfo = events.KeyInfo

// Topics creates ingress topics.
type Topics interface {
	CreateTopic(ctx context.Context, topic string, partitions int) error
}

// ForeignKey is implemented by decryption errors that found a ciphertext
// sealed under another tenant's key: a boundary crossing.
type ForeignKey interface {
	error
	ForeignKeyID() uint32
}

// Config wires a Vault.
type Config struct {
	DataDir string              // registry file lives here
	Keys    Keys                // required: KeysOf(keystore)
	Stores  *projections.Stores // required
	Audit   *audit.Log          // required
	Topics  Topics              // required
	// Producers gives each tenant's producers a broker principal of their
	// own. Optional: nil when the brokers do not authenticate.
	Producers Producers
	// TopicIDs checks that a tenant topic is the one the vault created.
	// Optional.
	TopicIDs      TopicIDs
	AdminToken    string // required: the admin credential
	MaxEventBytes int    // default events.DefaultMaxEventBytes
	Partitions    int    // partitions of a new tenant topic; default 1
	// MaxTenants bounds the tenants that exist at once (active or being
	// shredded; a shredded tenant's tombstone does not count): a create
	// past it is refused with ECONFLICT and audited. 0: no limit.
	MaxTenants int
	// Replicate, in a cluster, publishes a tenant just created (entry:
	// its registry entry, JSON, no secrets) to the other nodes; the create
	// fails, undone, when it does. ReplicateShred publishes a shred done
	// here. Nil: one node.
	// Changelog, in a cluster, restores a store a node takes over (and
	// is deleted by a shred). Each batch's store writes go to it in the
	// Kafka transaction of the ingest round (PrepareIngest), before the
	// store commits them; Ingest then refuses (ErrClusterIngest).
	Changelog      Changelog
	Replicate      func(ctx context.Context, t events.TenantID, entry []byte) error
	ReplicateShred func(ctx context.Context, t events.TenantID) error
	// OnTenantCreated is called after a tenant is created (to start consuming
	// its topic at once). Optional.
	OnTenantCreated func(events.TenantID)
	// OnIngested, when set, is called after each batch a tenant's store
	// committed, with how many events it applied and how many records it
	// quarantined (per-tenant metrics). It must not block.
	OnIngested func(t events.TenantID, applied, quarantined int)
	// Ingress stops and purges a tenant's topic when it is shredded.
	Ingress Ingress
	// SignReceipt signs a shred receipt (a signed note by the audit key,
	// audit.SignReceipt's form) for the audit record that will hold it.
	SignReceipt func(body []byte) ([]byte, error)
	// RotateMaster re-wraps every keyset under a new master key URI.
	RotateMaster func(ctx context.Context, newURI string) error
	// AggregateInterval is the window over which the records anyone can
	// cause without a credential (unauthenticated requests through
	// AuthenticateFrom and RefuseFrom; ingest.skip of the topic of an
	// unknown tenant) are aggregated per source: the first of a window is
	// recorded at once, the others in one aggregate record when it closes
	// (see audit.DetailAggregated). Default DefaultAggregateInterval (10s);
	// negative: every record written.
	AggregateInterval time.Duration
	// AggregateSources bounds the sources aggregated apart at once; past
	// it, new sources share the windows of audit.SourceOverflow. Default
	// DefaultAggregateSources (1024).
	AggregateSources int
	// Embedder, when set, computes the embedding of documents published
	// without one, and of searches by text. Optional: without it,
	// documents must carry data.embedding and searches a vector.
	Embedder Embedder
	// KeepUnknownIngress keeps on the brokers the records of topics of
	// tenants this vault does not have (skipped and audited): on brokers
	// shared with other vaults they may be another vault's, or a tenant's
	// being moved here. Default false: they are deleted, none stays in
	// plaintext.
	KeepUnknownIngress bool
	// Mover moves tenants' keys between vaults (export, import); nil:
	// export and import answer EUNAVAILABLE.
	Mover KeyMover
	// SignNote signs a note text with the audit log's key (a bundle's
	// signature); required for export.
	SignNote func(text string) ([]byte, error)
	// OnTenantImported is called after a tenant was imported, with its
	// bundle's offsets (partition → last applied offset), to consume its
	// topic from there.
	OnTenantImported func(t events.TenantID, offsets map[int]int64)
	Logger           *slog.Logger
	Now              func() time.Time
}

func (c *Config) setDefaults() {
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = events.DefaultMaxEventBytes
	}
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.AggregateInterval == 0 {
		c.AggregateInterval = DefaultAggregateInterval
	}
	if c.AggregateSources == 0 {
		c.AggregateSources = DefaultAggregateSources
	}
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("vault: DataDir is required"))
	}
	errs = append(errs, c.Keys.validate()...)
	if c.Stores == nil {
		errs = append(errs, errors.New("vault: Stores is required"))
	}
	if c.Audit == nil {
		errs = append(errs, errors.New("vault: Audit is required"))
	}
	if c.Topics == nil {
		errs = append(errs, errors.New("vault: Topics is required"))
	}
	if len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("vault: AdminToken of at least 16 characters is required"))
	}
	if c.MaxEventBytes < 0 {
		errs = append(errs, errors.New("vault: MaxEventBytes must not be negative"))
	}
	if c.AggregateSources < 0 {
		errs = append(errs, errors.New("vault: AggregateSources must not be negative"))
	}
	if c.MaxTenants < 0 {
		errs = append(errs, errors.New("vault: MaxTenants must not be negative"))
	}
	return errors.Join(errs...)
}

// Vault is the tenants' vault. It is safe for concurrent use.
type Vault struct {
	cfg       Config
	adminHash [32]byte
	reg       *registry
	stats     Stats
	restored  restored    // in a cluster: stores caught up with their changelog
	agg       *aggregator // records anyone can cause, aggregated per source
	// createMu serialises tenant creation and shredding (rare, multi-step).
	createMu sync.Mutex

	jobsMu sync.Mutex
	jobs   map[events.TenantID]*rewrapJob
	jobsWG sync.WaitGroup
	closed bool
}

// Stats are the vault's counters, exported on /metrics.
type Stats struct {
	EventsApplied     atomic.Int64
	EventsDuplicate   atomic.Int64
	EventsQuarantined atomic.Int64
	EventsSkipped     atomic.Int64
	UnknownTenantMsgs atomic.Int64
	Batches           atomic.Int64
	Reads             atomic.Int64
	Denied            atomic.Int64
}

// Stats returns the live counters.
func (v *Vault) Stats() *Stats { return &v.stats }

// Open opens the vault's tenant registry.
func Open(cfg Config) (*Vault, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	reg, err := openRegistry(filepath.Join(cfg.DataDir, "tenants.json"))
	if err != nil {
		return nil, err
	}
	v := &Vault{cfg: cfg, adminHash: sha256.Sum256([]byte(cfg.AdminToken)), reg: reg, jobs: make(map[events.TenantID]*rewrapJob)}
	v.agg = newAggregator(cfg.AggregateInterval, cfg.AggregateSources, cfg.Now, v.record, cfg.Logger)
	return v, nil
}

// Tenants returns the ids of all tenants, sorted.
func (v *Vault) Tenants() []events.TenantID { return v.reg.ids() }

// Exists reports whether id names an active tenant (not shredded): a
// lock-free lookup in the registry, for bounding metric labels to tenants
// that exist.
func (v *Vault) Exists(id string) bool {
	e, ok := v.reg.get(events.TenantID(id))
	return ok && e.active()
}

// Principal is an authenticated caller. Only Authenticate makes one.
type Principal struct {
	admin  bool
	tenant events.TenantID
}

// IsAdmin reports whether p holds the admin credential.
func (p Principal) IsAdmin() bool { return p.admin }

// Tenant is the tenant p's credential belongs to ("" for admin).
func (p Principal) Tenant() events.TenantID { return p.tenant }

// String names p for the audit log: "admin" or "tenant:<id>".
func (p Principal) String() string { return string(p.auditPrincipal()) }

// auditPrincipal is p as an audit record's Principal.
func (p Principal) auditPrincipal() audit.Principal {
	switch {
	case p.admin:
		return audit.PrincipalAdmin
	case p.tenant != "":
		return audit.PrincipalTenant(p.tenant)
	}
	return audit.PrincipalAnonymous
}

// Authenticate turns a bearer token into a Principal. An empty or unknown
// token fails with EUNAUTHORIZED and is audited, each failure in a record
// of its own: callers that know where a request came from use
// AuthenticateFrom.
func (v *Vault) Authenticate(ctx context.Context, token string, action audit.Action, resource string) (Principal, error) {
	return v.authenticate(ctx, "", token, action, resource, "")
}

// AuthenticateFrom is Authenticate for a request from source (an HTTP
// client's IP address): its failures are aggregated per source (see
// Config.AggregateInterval), so that a flood of wrong tokens costs the
// audit log a bounded number of records, whose counts add up.
func (v *Vault) AuthenticateFrom(ctx context.Context, source, token string, action audit.Action, resource string) (Principal, error) {
	return v.AuthenticateFor(ctx, source, token, action, resource, "")
}

// AuthenticateFor is AuthenticateFrom for a request that names tenant (an
// HTTP path's tenant; "" for none): a failure's audit record keeps the
// tenant probed — the id itself when it is a valid id of a tenant of the
// registry, else its keyed hash (the path is the caller's text, and may
// be anything). Failures on a tenant of the vault are aggregated apart
// from those on others, so that an aggregate record names its tenant.
func (v *Vault) AuthenticateFor(ctx context.Context, source, token string, action audit.Action, resource, tenant string) (Principal, error) {
	if source == "" {
		source = "unknown"
	}
	return v.authenticate(ctx, source, token, action, resource, tenant)
}

// RefuseFrom audits a request from source refused before its credential
// was looked at (a rate limit), aggregated per source as AuthenticateFrom's
// failures are, and returns the refusal (code ERATELIMITED), or the audit
// failure.
func (v *Vault) RefuseFrom(ctx context.Context, source string, action audit.Action, resource string) error {
	if source == "" {
		source = "unknown"
	}
	v.stats.Denied.Add(1)
	const reason = "rate limited"
	if err := v.agg.record(ctx, source, audit.Record{Principal: audit.PrincipalAnonymous, Action: action, Resource: resource, Outcome: audit.OutcomeDenied, Reason: reason}); err != nil {
		return err
	}
	return events.Reasonf(events.ERATELIMITED, events.ReasonRateLimited, "too many failed authentications from this address: retry later")
}

func (v *Vault) authenticate(ctx context.Context, source, token string, action audit.Action, resource, tenant string) (Principal, error) {
	if token != "" {
		h := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(h[:], v.adminHash[:]) == 1 {
			return Principal{admin: true}, nil
		}
		if t, ok := v.reg.byTokenHash(h); ok {
			return Principal{tenant: t}, nil
		}
	}
	reason := "missing credential"
	if token != "" {
		reason = "unknown credential"
	}
	v.stats.Denied.Add(1)
	err := events.Errorf(events.EUNAUTHORIZED, "%s", reason)
	rec := audit.Record{Principal: audit.PrincipalAnonymous, Action: action, Resource: resource, Outcome: audit.OutcomeDenied, Reason: reason}
	if tenant != "" {
		var herr error
		if rec.Tenant, herr = v.probedTenant(tenant); herr != nil {
			return Principal{}, herr
		}
	}
	if source == "" {
		return Principal{}, v.auditDenied(ctx, rec, err)
	}
	if aerr := v.agg.record(ctx, source, rec); aerr != nil {
		return Principal{}, aerr
	}
	return Principal{}, err
}

// record appends rec to the audit log, flagged (or not) by what it says
// happened (audit.Flag), with the nodes of ctx's Hop (WithHop), and
// returns once it is durable.
func (v *Vault) record(ctx context.Context, rec audit.Record) error {
	addHop(&rec, hopOf(ctx))
	audit.Flag(&rec)
	if _, err := v.cfg.Audit.Append(ctx, rec); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// auditDenied records rec and returns denial, or the audit failure if the
// record could not be made durable.
func (v *Vault) auditDenied(ctx context.Context, rec audit.Record, denial error) error {
	if err := v.record(ctx, rec); err != nil {
		return err
	}
	return denial
}

// TenantInfo describes one tenant.
type TenantInfo struct {
	ID       events.TenantID `json:"id"`
	Created  time.Time       `json:"created"`
	Topic    string          `json:"topic"`
	State    string          `json:"state"` // active, shredding, shredded, moved
	Shredded *time.Time      `json:"shredded,omitempty"`
	// Exported: a bundle was exported and ingest is frozen (until moved).
	Exported *time.Time `json:"exported,omitempty"`
	// MovedTo names the destination of a moved tenant.
	MovedTo string `json:"moved_to,omitempty"`
	// Kafka is the broker credential of the tenant's producers (its
	// password only when just made); nil when the brokers do not
	// authenticate.
	Kafka *KafkaCredential `json:"kafka,omitempty"`
}

// requireAdmin audits and refuses a non-admin principal.
// RequireAdmin returns nil for the admin; for any other principal it
// audits the refusal of action on resource and returns it (EFORBIDDEN).
// It is for endpoints that touch no tenant but are the admin's alone
// (vaultd's /metrics).
func (v *Vault) RequireAdmin(ctx context.Context, p Principal, action audit.Action, resource string) error {
	return v.requireAdmin(ctx, p, action, resource)
}

func (v *Vault) requireAdmin(ctx context.Context, p Principal, action audit.Action, resource string) error {
	return v.requireAdminOn(ctx, p, action, resource, "")
}

// requireAdminOn is requireAdmin for an action on tenant target: the
// refusal is recorded against target, so a tenant credential used on
// another tenant's admin endpoint (shred, keys, Kafka credential) is a
// flagged boundary crossing (token_tenant_mismatch), not a plain denial.
func (v *Vault) requireAdminOn(ctx context.Context, p Principal, action audit.Action, resource, target string) error {
	if p.admin {
		return nil
	}
	v.stats.Denied.Add(1)
	tenant := string(p.tenant)
	if target != "" {
		tenant = target // the audit log bounds it
	}
	return v.auditDenied(ctx, audit.Record{Principal: p.auditPrincipal(), Tenant: tenant, Action: action, Resource: resource, Outcome: audit.OutcomeDenied, Reason: "admin credential required"},
		events.Errorf(events.EFORBIDDEN, "admin credential required"))
}

// CreateTenant creates tenant id: its keyset, its ingress topic, its store,
// and its API token, which is returned once (only its hash is kept).
func (v *Vault) CreateTenant(ctx context.Context, p Principal, id string) (TenantInfo, string, error) {
	return v.create(ctx, p, id, false)
}

// RecreateTenant creates tenant id again after it was shredded: new keys,
// an empty store, a new token. Nothing of the shredded tenant comes back
// (its keys are destroyed and its store removed). Without the explicit ask,
// CreateTenant refuses a shredded id with ECONFLICT.
func (v *Vault) RecreateTenant(ctx context.Context, p Principal, id string) (TenantInfo, string, error) {
	return v.create(ctx, p, id, true)
}

func (v *Vault) create(ctx context.Context, p Principal, id string, recreate bool) (TenantInfo, string, error) {
	const action = audit.ActionTenantCreate
	if err := v.requireAdmin(ctx, p, action, "tenants"); err != nil {
		return TenantInfo{}, "", err
	}
	t, err := events.ParseTenantID(id)
	if err != nil {
		return TenantInfo{}, "", v.auditDenied(ctx, audit.Record{Principal: p.auditPrincipal(), Tenant: id, Action: action, Outcome: audit.OutcomeRejected, Reason: "invalid tenant id"}, err)
	}
	v.createMu.Lock()
	defer v.createMu.Unlock()
	rejected := func(reason string, err error) (TenantInfo, string, error) {
		return TenantInfo{}, "", v.auditDenied(ctx, audit.Record{Principal: p.auditPrincipal(), Tenant: id, Action: action, Outcome: audit.OutcomeRejected, Reason: reason}, err)
	}
	if e, ok := v.reg.get(t); ok {
		switch {
		case e.State == StateShredding:
			return rejected("shred in progress", events.Errorf(events.ECONFLICT, "tenant %s is being shredded", t))
		case e.State == StateShredded && !recreate:
			return rejected("tenant was shredded", events.Errorf(events.ECONFLICT, "tenant %s was shredded; re-creating it needs an explicit recreate (it will be empty)", t))
		case e.State != StateShredded:
			return rejected("tenant exists", events.Errorf(events.ECONFLICT, "tenant %s already exists", t))
		}
	} else if recreate {
		recreate = false // nothing to re-create: a plain create
	}
	if n := v.reg.existing(); v.cfg.MaxTenants > 0 && n >= v.cfg.MaxTenants {
		return rejected("tenant limit reached", events.Errorf(events.ECONFLICT,
			"tenant limit reached: the vault holds %d tenants, its limit (max tenants %d); shred one or raise the limit", n, v.cfg.MaxTenants))
	}
	info, token, keyID, err := v.createTenant(ctx, t, recreate)
	rec := audit.Record{Principal: p.auditPrincipal(), Tenant: string(t), Action: action, Resource: "tenants/" + string(t), Outcome: audit.OutcomeOK}
	if recreate {
		rec.Details = map[string]string{"recreated": "true"}
	}
	if err != nil {
		rec.Outcome, rec.Reason = audit.OutcomeError, events.ErrorMessage(err)
		if aerr := v.record(ctx, rec); aerr != nil {
			return TenantInfo{}, "", errors.Join(err, fmt.Errorf("audit: %w", aerr))
		}
		return TenantInfo{}, "", err
	}
	rec.KeyIDs = []uint32{keyID}
	if err := v.record(ctx, rec); err != nil {
		return TenantInfo{}, "", err
	}
	if v.cfg.OnTenantCreated != nil {
		v.cfg.OnTenantCreated(t)
	}
	v.cfg.Logger.Info("tenant created", "tenant", t, "topic", info.Topic, "recreated", recreate)
	return info, token, nil
}

// createTenant does the steps of a create: its topic first (which fails
// when the name collides with a topic on the brokers), then its keys, its
// store and its producers' principal; the registry entry, which makes the
// tenant exist, is written last. A step that fails undoes those before it
// (undoCreate), so a failed create leaves nothing behind: no keyset, no
// store, no principal, no ACL, no topic. A create interrupted by a crash
// left what it had made, which a create repeated reuses.
func (v *Vault) createTenant(ctx context.Context, t events.TenantID, recreate bool) (_ TenantInfo, _ string, _ uint32, err error) {
	topic := events.TopicFor(t)
	if err := v.cfg.Topics.CreateTopic(ctx, topic, v.cfg.Partitions); err != nil {
		if errors.Is(err, ErrTopicCollision) {
			return TenantInfo{}, "", 0, events.Reasonf(events.ECONFLICT, events.ReasonTopicCollision,
				"tenant %s: its topic %s collides with a topic on the brokers whose name differs only in '.' and '_' (Kafka reads them alike): delete that topic, or choose another tenant id", t, topic)
		}
		return TenantInfo{}, "", 0, fmt.Errorf("create topic %s: %w", topic, err)
	}
	var made createSteps
	defer func() {
		if err != nil {
			if uerr := v.undoCreate(context.WithoutCancel(ctx), t, recreate, made); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
	}()
	made.topic = true
	var c Cipher
	if recreate {
		if c, err = v.cfg.Keys.Ciphers.Recreate(t); err != nil {
			return TenantInfo{}, "", 0, fmt.Errorf("re-create keys of tenant %s: %w", t, err)
		}
	} else if c, err = v.cfg.Keys.Ciphers.Create(t); err != nil {
		// Keys left by an interrupted create: reuse them.
		if c, err = v.cfg.Keys.Ciphers.Cipher(t); err != nil {
			return TenantInfo{}, "", 0, fmt.Errorf("create keys of tenant %s: %w", t, err)
		}
	}
	made.keys = true
	var topicID string
	if v.cfg.TopicIDs != nil {
		if topicID, err = v.cfg.TopicIDs.TopicID(ctx, topic); err != nil {
			return TenantInfo{}, "", 0, fmt.Errorf("create topic %s: %w", topic, err)
		}
	}
	made.store = true // also when Create fails half-way
	if err := v.cfg.Stores.Create(t); err != nil && !errors.Is(err, projections.ErrExists) {
		return TenantInfo{}, "", 0, fmt.Errorf("create store of tenant %s: %w", t, err)
	}
	token, hash, err := newToken(t)
	if err != nil {
		return TenantInfo{}, "", 0, err
	}
	made.producer = true // also when SetProducer fails half-way
	kc, err := v.setProducer(ctx, t)
	if err != nil {
		return TenantInfo{}, "", 0, err
	}
	e := registryEntry{ID: t, Created: v.cfg.Now().UTC(), TokenSHA256: hex.EncodeToString(hash[:]), TopicID: topicID}
	if kc != nil {
		e.KafkaUser = kc.User
	}
	if v.cfg.Replicate != nil {
		entry, err := json.Marshal(e)
		if err != nil {
			return TenantInfo{}, "", 0, err
		}
		if err := v.cfg.Replicate(ctx, t, entry); err != nil {
			return TenantInfo{}, "", 0, fmt.Errorf("replicate tenant %s to the cluster: %w", t, err)
		}
	}
	if err := v.reg.put(e); err != nil {
		return TenantInfo{}, "", 0, err
	}
	info := e.info()
	info.Kafka = kc
	return info, token, c.PrimaryKeyID(), nil
}

// createSteps are the steps of a create done so far.
type createSteps struct{ topic, keys, store, producer bool }

// undoCreate undoes the steps of a failed create of t, last first: the
// producers' principal and its ACLs, the store, the keys (discarded, as
// if never made; a re-create's fresh keys are destroyed again, as the
// tenant stays shredded), the topic.
func (v *Vault) undoCreate(ctx context.Context, t events.TenantID, recreate bool, made createSteps) error {
	var errs []error
	if made.producer && v.cfg.Producers != nil {
		if err := v.cfg.Producers.RemoveProducer(ctx, events.ProducerPrincipal(t)); err != nil {
			errs = append(errs, fmt.Errorf("undo create: remove producer credential: %w", err))
		}
	}
	if made.store {
		if err := v.cfg.Stores.Remove(t); err != nil && !errors.Is(err, projections.ErrNotFound) {
			errs = append(errs, fmt.Errorf("undo create: remove store: %w", err))
		}
	}
	if made.keys {
		var err error
		if recreate {
			_, err = v.cfg.Keys.Destroyer.Destroy(t)
		} else {
			err = v.cfg.Keys.Ciphers.Discard(t)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("undo create: remove keys: %w", err))
		}
	}
	if made.topic && v.cfg.Ingress != nil {
		if err := v.cfg.Ingress.Purge(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("undo create: delete topic: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tenant %s: %w", t, err)
	}
	return nil
}

// ListTenants lists all tenants (admin only).
func (v *Vault) ListTenants(ctx context.Context, p Principal) ([]TenantInfo, error) {
	const action = audit.ActionTenantList
	if err := v.requireAdmin(ctx, p, action, "tenants"); err != nil {
		return nil, err
	}
	entries := v.reg.list()
	out := make([]TenantInfo, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if err := v.record(ctx, audit.Record{Principal: p.auditPrincipal(), Action: action, Resource: "tenants", Outcome: audit.OutcomeOK, Count: len(out)}); err != nil {
		return nil, err
	}
	return out, nil
}

// AuditLog hands the admin a reader of the audit log, for checkpoints,
// proofs and exports: metadata only, so reading it is not itself audited.
func (v *Vault) AuditLog(ctx context.Context, p Principal) (AuditReader, error) {
	if err := v.requireAdmin(ctx, p, audit.ActionAuditRead, "audit"); err != nil {
		return AuditReader{}, err
	}
	return AuditReader{v.cfg.Audit}, nil
}

// AuditPublicKey is the note verifier key of the audit log's checkpoints:
// public, needed by anyone who verifies.
func (v *Vault) AuditPublicKey() string { return v.cfg.Audit.PublicKey() }

// Audit lists audit records (admin only). Reading the audit log is itself
// not audited per call: it holds no tenant data.
func (v *Vault) Audit(ctx context.Context, p Principal, f audit.Filter) ([]audit.Record, error) {
	if err := v.requireAdmin(ctx, p, audit.ActionAuditRead, "audit"); err != nil {
		return nil, err
	}
	return v.cfg.Audit.List(ctx, f)
}
