// Package store defines what keyhole keeps and the interface every backing
// database implements: SQLite (embedded, the default; store/sqlite) and
// PostgreSQL (several nodes; store/postgres). One conformance suite
// (store/storetest) runs against each.
//
// The store holds ciphertext and hashes only: secret values arrive sealed by
// internal/vault and tokens arrive hashed by internal/token, so neither a
// backup of the database nor a bug in this layer can expose them.
//
// Every configuration write bumps a version number in the same transaction,
// which is what other nodes poll (and are notified of) to rebuild their
// snapshot.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors every implementation returns (wrapped or not) so callers can map
// them to HTTP statuses.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrMissingRef: the object references another that does not exist
	// (a proxy's secret, a token's agent).
	ErrMissingRef = errors.New("missing reference")
	// ErrInUse: the object is referenced and cannot be deleted.
	ErrInUse = errors.New("in use")
)

// Key is one data key of the vault's keyring, wrapped by the master key.
type Key struct {
	ID        uint32
	Wrapped   []byte
	CreatedAt time.Time
	Active    bool
}

// Secret is a secret's metadata; the sealed value of each version is kept
// apart (SecretVersion).
type Secret struct {
	Name      string
	Version   int
	Kind      string   // "string" or "object"
	Fields    []string // object secrets: field names, sorted
	CreatedAt time.Time
	RotatedAt *time.Time
	UsedBy    []string // proxies whose auth names it (filled by reads)
}

// SecretVersion is one sealed value of a secret.
type SecretVersion struct {
	Name       string
	Version    int
	Ciphertext []byte
	CreatedAt  time.Time
}

// Proxy is a stored proxy: its JSON spec, plus the secret it references
// (kept as a column so a secret in use cannot be deleted, race-free).
type Proxy struct {
	Name      string
	Secret    string
	Spec      []byte
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Agent is an identity that tokens are issued to.
type Agent struct {
	Name      string
	Labels    map[string]string
	CreatedAt time.Time
}

// Token is an agent token: only its hash is kept.
type Token struct {
	ID        string
	Hash      string
	Agent     string
	Name      string
	Proxies   []string
	Rules     []byte // JSON array of child-token rules, or nil
	ParentID  string
	Depth     int
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// AdminToken is a credential for the admin API, with a role.
type AdminToken struct {
	ID        string
	Hash      string
	Name      string
	Role      string
	CreatedAt time.Time
	ExpiresAt *time.Time
	RevokedAt *time.Time
}

// State is everything a node's snapshot is built from, read in one
// consistent transaction.
type State struct {
	Version     int64
	Keys        []Key
	Secrets     []Secret
	Sealed      map[string]SecretVersion // latest version of each secret
	Proxies     []Proxy
	Agents      []Agent
	Tokens      []Token
	AdminTokens []AdminToken
}

// Config is the configuration half of the store.
type Config interface {
	// Meta is a small key/value table (master key fingerprint, ids).
	GetMeta(ctx context.Context, key string) (string, error)
	// SetMetaIfAbsent stores value unless key exists; it returns the
	// stored value either way.
	SetMetaIfAbsent(ctx context.Context, key, value string) (string, error)

	Keys(ctx context.Context) ([]Key, error)
	// AddKey stores a new data key; when it is active the others stop
	// being active (one transaction).
	AddKey(ctx context.Context, k Key) error

	// Version is the configuration version, bumped by every write.
	Version(ctx context.Context) (int64, error)
	// Load reads the whole configuration in one transaction.
	Load(ctx context.Context) (*State, error)

	// CreateSecret stores version 1 (ErrConflict if the name exists).
	CreateSecret(ctx context.Context, s Secret, v SecretVersion) error
	// RotateSecret adds version current+1; seal is called inside the
	// transaction with the new version number (the vault binds the
	// ciphertext to it) and returns the ciphertext and the new kind and
	// fields.
	RotateSecret(ctx context.Context, name string, at time.Time, seal func(version int) (ct []byte, kind string, fields []string, err error)) (Secret, error)
	GetSecret(ctx context.Context, name string) (Secret, error)
	ListSecrets(ctx context.Context) ([]Secret, error)
	// DeleteSecret removes a secret and its versions; ErrInUse while a
	// proxy references it.
	DeleteSecret(ctx context.Context, name string) error

	// PutProxy creates (create=true; ErrConflict if it exists) or replaces
	// (ErrNotFound if it does not) a proxy. ErrMissingRef when its secret
	// does not exist.
	PutProxy(ctx context.Context, p Proxy, create bool) error
	GetProxy(ctx context.Context, name string) (Proxy, error)
	ListProxies(ctx context.Context) ([]Proxy, error)
	DeleteProxy(ctx context.Context, name string) error
	// UpdateProxy reads, changes and writes a proxy in one transaction
	// (adding or removing a rule must not lose a concurrent change).
	UpdateProxy(ctx context.Context, name string, at time.Time, change func(p *Proxy) error) (Proxy, error)

	CreateAgent(ctx context.Context, a Agent) error
	GetAgent(ctx context.Context, name string) (Agent, error)
	ListAgents(ctx context.Context) ([]Agent, error)
	// DeleteAgent removes an agent and revokes its tokens.
	DeleteAgent(ctx context.Context, name string, at time.Time) error

	// CreateToken stores a token; ErrMissingRef if its agent (or parent)
	// does not exist.
	CreateToken(ctx context.Context, t Token) error
	GetToken(ctx context.Context, id string) (Token, error)
	ListTokens(ctx context.Context, agent string) ([]Token, error)
	// RevokeToken revokes a token and every descendant; it returns how
	// many were revoked (0 and no error if already revoked).
	RevokeToken(ctx context.Context, id string, at time.Time) (int, error)

	CreateAdminToken(ctx context.Context, t AdminToken) error
	ListAdminTokens(ctx context.Context) ([]AdminToken, error)
	RevokeAdminToken(ctx context.Context, id string, at time.Time) error

	// Apply writes a whole declarative configuration in one transaction
	// (apply.go): all of it or, on any error, nothing. An apply that
	// changes nothing, and a dry run, write nothing and leave the version
	// as it is. Errors about one object of the plan are *ApplyError.
	Apply(ctx context.Context, p ApplyPlan) (ApplyResult, error)
}

// AuditEvent is one link of a node's audit hash chain: a whole record, or
// the start or the end of a forwarded request's record. Data is the exact
// bytes that were hashed; the index fields are derived from it and kept in
// columns so that queries run on indexes.
type AuditEvent struct {
	Node     string
	Seq      int64
	RecordID string
	Kind     string // "record", "start", "end", "cut", "gap"
	Data     []byte
	PrevHash []byte
	Hash     []byte
	// Index: for "record" and "start" the record's index row; for "end",
	// Status, LatencyMS and (when not empty) Decision, Reason and Rule are
	// applied to the record's row. "cut" and "gap" events have no row.
	Index LogIndex
	// HeadMAC, when set, makes this event its node's recorded head:
	// AppendAudit stores (Node, Seq, Hash, HeadMAC) as the node's row of
	// the heads table in the batch's transaction, so the head can never
	// disagree with a committed chain. The audit writer sets it on the last
	// event of each batch; the MAC (audit.HeadMAC) is keyed by the master
	// key, so whoever can write the database cannot forge a head.
	HeadMAC []byte
}

// LogIndex is the queryable part of an audit record.
type LogIndex struct {
	ID        string
	Time      time.Time
	Node      string
	Proxy     string
	Agent     string
	TokenID   string
	Method    string
	Path      string
	Decision  string
	Reason    string
	Rule      string
	Status    int
	LatencyMS float64
	Complete  bool
}

// LogRow is one record as stored: its index and the data of its events
// (start or whole record, then end if any), with the chain links.
type LogRow struct {
	Index  LogIndex
	Events []AuditEvent
}

// Record ids are UUIDv7 strings made when the request arrives, and a
// record's time is read at the same moment: the id's first 48 bits are its
// time in milliseconds, within IDSkew of the record's time. Stores use that
// to turn a time window into an id range, which every (column, id) index
// can seek.
const IDSkew = time.Second

// IDFloor is the smallest UUIDv7 string of the millisecond of t: every id
// made at t or later sorts at or after it.
func IDFloor(t time.Time) string {
	ms := uint64(max(t.UnixMilli(), 0))
	return fmt.Sprintf("%08x-%04x-0000-0000-000000000000", ms>>16, ms&0xffff)
}

// LogQuery filters and pages the audit log, newest first.
type LogQuery struct {
	Proxy, Agent, TokenID, Decision, Reason, Node, PathContains string
	Status                                                      int
	Since, Until                                                time.Time
	// Before is the cursor: only records with an id below it.
	Before string
	// After: only records with an id above it, oldest first (follow mode).
	After     string
	Limit     int
	WithData  bool // read the events' data too
	Ascending bool
}

// ChainHead is the last link of a node's chain: as read from the chain
// itself (ChainHead), as recorded beside it in the heads table (Heads), or
// as a checkpoint handed to audit.Verify.
type ChainHead struct {
	Seq  int64
	Hash []byte
	// MAC authenticates the node, Seq and Hash (audit.HeadMAC); set by
	// Heads, empty from ChainHead.
	MAC []byte
	// UpdatedAt is when the head was written (Heads).
	UpdatedAt time.Time
	// Source names where a checkpoint handed to audit.Verify was read
	// ("audit_heads", "checkpoint file"), for its report; Invalid, when
	// set, says why that checkpoint cannot be trusted (its MAC does not
	// verify, it could not be read), which Verify reports.
	Source  string
	Invalid string
}

// Audit is the audit half of the store.
type Audit interface {
	// AppendAudit writes a batch of events in one transaction: all or none.
	AppendAudit(ctx context.Context, batch []AuditEvent) error
	// ChainHead returns the last link of node's chain (zero if none).
	ChainHead(ctx context.Context, node string) (ChainHead, error)
	// Heads returns every node's recorded head (the events AppendAudit
	// was given with a HeadMAC), with MAC and UpdatedAt, by node. A node
	// without one is absent.
	Heads(ctx context.Context) (map[string]ChainHead, error)
	// ChainLink returns the event at seq of node's chain (ErrNotFound if
	// there is none).
	ChainLink(ctx context.Context, node string, seq int64) (AuditEvent, error)
	// DeleteAuditPrefix deletes, in one transaction, at most limit of
	// node's events with seq below before, lowest seq first, and the index
	// rows of the records whose "record" or "start" event is among them (a
	// later "end" of such a record stays, as a link without a record). It
	// returns how many events and index rows it deleted; 0 events when
	// none is left below before. Audit retention calls it in a loop.
	DeleteAuditPrefix(ctx context.Context, node string, before int64, limit int) (events, records int64, err error)
	QueryLogs(ctx context.Context, q LogQuery) ([]LogRow, error)
	GetLog(ctx context.Context, id string) (LogRow, error)
	// Chain calls fn for each event of node's chain in order of Seq.
	Chain(ctx context.Context, node string, fn func(AuditEvent) error) error
	// ChainFrom returns up to limit events of node's chain with Seq > after, in order (the log stream).
	ChainFrom(ctx context.Context, node string, after int64, limit int) ([]AuditEvent, error)
	// ChainNodes lists the nodes that have a chain.
	ChainNodes(ctx context.Context) ([]string, error)
	// Records calls fn for each index row of node, with its events, in
	// order of id (verify compares the index with the chain).
	Records(ctx context.Context, node string, fn func(LogRow) error) error
	// LastUsed returns, per token id, the time of its latest record.
	LastUsed(ctx context.Context, tokenIDs []string) (map[string]time.Time, error)
	// Ping checks that the store answers (readiness).
	Ping(ctx context.Context) error
}

// Store is a whole backing database.
type Store interface {
	Config
	Audit
	Close() error
}

// ---- dashboard users (optional) ----

// User is a dashboard sign-in: a name and a password that stand for one
// admin identity, an admin token whose raw value was never shown to anyone
// (AdminTokenID). The user's role, expiry and revocation are that admin
// token's: revoking it (DELETE /api/v1/admin-tokens/{id}) locks the user
// out and ends their sessions.
type User struct {
	Name string
	// PasswordHash is internal/ui/password's encoding
	// ("pbkdf2-sha256$ITERATIONS$SALT$KEY"); never the password.
	PasswordHash string
	AdminTokenID string
	CreatedAt    time.Time
}

// Users keeps dashboard users. It is optional: a store without it offers
// no user/password sign-in (admin tokens still sign in), so callers find
// it with a type assertion (st.(store.Users)).
type Users interface {
	// CreateUser stores a user; ErrConflict if the name exists.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns a user; ErrNotFound if there is none.
	GetUser(ctx context.Context, name string) (User, error)
	// ListUsers lists the users by name.
	ListUsers(ctx context.Context) ([]User, error)
	// DeleteUser removes a user; ErrNotFound if there is none.
	DeleteUser(ctx context.Context, name string) error
}

// ---- dashboard sessions and OAuth connect flows (optional) ----

// Session is a dashboard session as stored. The browser's cookie holds 256
// random bits and the store only their SHA-256 (ID): a copy of the
// database cannot sign in. The session's CSRF token is derived from the
// cookie value by the dashboard, so it is not stored at all. The identity
// is AdminTokenID's: revoking that admin token ends the session.
type Session struct {
	// ID is the SHA-256 of the session cookie's value, in hex.
	ID           string
	AdminTokenID string
	// Display is the name shown (the user's, or the admin token's).
	Display string
	// Via is how the session signed in: "password" or "token".
	Via string
	// Flash is a one-time message for the session's next page ("" none).
	Flash     string
	CreatedAt time.Time
	// LastSeen is the last request that touched the session (TouchSession
	// is called at most once a minute per session).
	LastSeen time.Time
	// ExpiresAt is when the session ends unless it is touched again: the
	// earlier of its idle deadline and its absolute one.
	ExpiresAt time.Time
}

// Sessions keeps the dashboard's sessions, so that any node serves any
// session (SPEC §10). It is optional: a store without it leaves sessions
// in the memory of the node that created them; callers find it with a
// type assertion (st.(store.Sessions)). Sessions are not configuration:
// no write bumps the version.
type Sessions interface {
	// CreateSession stores a new session; ErrConflict if its ID exists,
	// ErrMissingRef if its admin token does not.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns the session with id; ErrNotFound if there is
	// none or it expired (ExpiresAt is not after now).
	GetSession(ctx context.Context, id string, now time.Time) (Session, error)
	// TouchSession sets the session's LastSeen and ExpiresAt (the sliding
	// idle deadline) unless it has already expired at seen; ErrNotFound
	// if there is no such live session.
	TouchSession(ctx context.Context, id string, seen, expires time.Time) error
	// SetFlash keeps a one-time message for the session's next page.
	SetFlash(ctx context.Context, id, msg string) error
	// TakeFlash returns and clears the session's message in one step ("",
	// nil when there is none): of two concurrent calls only one gets it.
	TakeFlash(ctx context.Context, id string) (string, error)
	// DeleteSession ends a session (sign-out); ErrNotFound if none.
	DeleteSession(ctx context.Context, id string) error
	// DeleteSessionsOf ends every session of an admin token and returns
	// how many there were.
	DeleteSessionsOf(ctx context.Context, adminTokenID string) (int64, error)
	// DeleteExpiredSessions deletes the sessions expired at now and
	// returns how many. Every node calls it periodically; concurrent
	// calls are harmless.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error)
}

// OAuthFlow is an OAuth 2.0 authorization-code connect in progress
// (POST /api/v1/secrets/{name}/oauth/start, completed by the provider's
// callback on any node). What is confidential — the PKCE verifier, the
// client secret — is in Sealed, sealed by the vault's keyring with an AAD
// that names the flow, so the store never holds it in clear.
type OAuthFlow struct {
	// ID is the SHA-256 of the flow's state parameter, in hex.
	ID string
	// Secret is the name of the secret the callback stores.
	Secret string
	// AdminTokenID is the admin identity that started the flow (it must
	// still be valid, with the admin role, when the callback comes).
	AdminTokenID string
	Sealed       []byte
	CreatedAt    time.Time
	ExpiresAt    time.Time
}

// OAuthFlows keeps OAuth connect flows, so that a provider's callback may
// land on any node (SPEC §10). It is optional: without it, flows live in
// the memory of the node that started them. Not configuration: no write
// bumps the version.
type OAuthFlows interface {
	// PutFlow stores a flow; ErrConflict if its ID exists, ErrMissingRef
	// if its admin token does not.
	PutFlow(ctx context.Context, f OAuthFlow) error
	// TakeFlow deletes the flow with id and returns it, in one statement:
	// a flow is taken once, whichever node asks first, and every other
	// call gets ErrNotFound. A flow expired at now is deleted too, and
	// ErrNotFound returned.
	TakeFlow(ctx context.Context, id string, now time.Time) (OAuthFlow, error)
	// DeleteExpiredFlows deletes the flows expired at now and returns how
	// many. Every node calls it periodically; concurrent calls are
	// harmless.
	DeleteExpiredFlows(ctx context.Context, now time.Time) (int64, error)
}
