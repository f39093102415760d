package acl

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Store keeps the bindings durable. Apply must have made add and remove
// durable (synced) before it returns: an acknowledged CreateAcls survives
// kill -9.
type Store interface {
	LoadACLs() ([]Binding, error)
	ApplyACLs(add, remove []Binding) error
}

// Config configures an Authorizer with Kafka's settings.
type Config struct {
	// SuperUsers (super.users) may do anything, whatever the ACLs say.
	SuperUsers []string
	// AllowEveryoneIfNoACLFound (allow.everyone.if.no.acl.found): a
	// resource no ACL names at all is open to everyone instead of closed.
	AllowEveryoneIfNoACLFound bool
	// MaxACLs bounds the stored bindings (Kafka has no such limit; every
	// binding is held in memory). <= 0 means DefaultMaxACLs.
	MaxACLs int
}

// DefaultMaxACLs bounds the bindings a broker holds: far more than any
// deployment writes by hand, few enough that matching stays cheap.
const DefaultMaxACLs = 100000

// ErrTooMany is returned when a create would exceed Config.MaxACLs.
var ErrTooMany = errors.New("too many ACLs")

// Authorizer decides requests by Kafka's StandardAuthorizer rules over the
// bindings of its Store. Decisions read an immutable index without locks;
// changes rebuild it.
type Authorizer struct {
	cfg   Config
	super map[string]bool
	store Store

	mu  sync.Mutex // serializes changes
	idx atomic.Pointer[index]
}

// resourceKey names one resource pattern's bindings.
type resourceKey struct {
	rt      kmsg.ACLResourceType
	pattern kmsg.ACLResourcePatternType
	name    string
}

type index struct {
	all   map[Binding]struct{}
	byRes map[resourceKey][]Binding
	// prefixLens are the lengths of the prefixed bindings' names per
	// resource type, ascending: a decision looks up only those prefixes
	// of a name.
	prefixLens map[kmsg.ACLResourceType][]int
}

func newIndex(all map[Binding]struct{}) *index {
	ix := &index{all: all, byRes: map[resourceKey][]Binding{}, prefixLens: map[kmsg.ACLResourceType][]int{}}
	type typeLen struct {
		rt kmsg.ACLResourceType
		n  int
	}
	seen := map[typeLen]bool{}
	for b := range all {
		k := resourceKey{b.ResourceType, b.PatternType, b.ResourceName}
		ix.byRes[k] = append(ix.byRes[k], b)
		lk := typeLen{b.ResourceType, len(b.ResourceName)}
		if b.PatternType == kmsg.ACLResourcePatternTypePrefixed && !seen[lk] {
			seen[lk] = true
			ix.prefixLens[b.ResourceType] = append(ix.prefixLens[b.ResourceType], len(b.ResourceName))
		}
	}
	for _, lens := range ix.prefixLens {
		sort.Ints(lens)
	}
	return ix
}

// New loads the bindings of store (nil: none, not durable: tests only).
func New(cfg Config, store Store) (*Authorizer, error) {
	if cfg.MaxACLs <= 0 {
		cfg.MaxACLs = DefaultMaxACLs
	}
	a := &Authorizer{cfg: cfg, super: map[string]bool{}, store: store}
	for _, u := range cfg.SuperUsers {
		a.super[u] = true
	}
	all := map[Binding]struct{}{}
	if store != nil {
		bs, err := store.LoadACLs()
		if err != nil {
			return nil, fmt.Errorf("acl: load: %w", err)
		}
		for _, b := range bs {
			all[b] = struct{}{}
		}
	}
	a.idx.Store(newIndex(all))
	return a, nil
}

// ParseSuperUsers splits super.users' value: principals separated by ';'.
func ParseSuperUsers(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ";") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, ":") {
			return nil, fmt.Errorf("super user %q is not a principal of the form Type:Name (User:alice)", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// IsSuperUser reports whether principal is one of super.users.
func (a *Authorizer) IsSuperUser(principal string) bool { return a.super[principal] }

// Authorize decides whether principal, connected from host (an IP
// address), may perform op on the literal resource (rt, name). As Kafka:
// a super user may do anything; otherwise a matching DENY wins over a
// matching ALLOW; with neither, the resource is denied if any binding
// applies to it at all, else allowed only with allow.everyone.if.no.acl.found.
func (a *Authorizer) Authorize(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if a.super[principal] {
		return true
	}
	ix := a.idx.Load()
	allowed, anyACL := false, false
	check := func(bs []Binding) (denied bool) {
		for _, b := range bs {
			anyACL = true
			switch matchEntry(b, principal, host, op) {
			case kmsg.ACLPermissionTypeDeny:
				return true
			case kmsg.ACLPermissionTypeAllow:
				allowed = true
			}
		}
		return false
	}
	lit := kmsg.ACLResourcePatternTypeLiteral
	if check(ix.byRes[resourceKey{rt, lit, name}]) || check(ix.byRes[resourceKey{rt, lit, WildcardResource}]) {
		return false
	}
	for _, n := range ix.prefixLens[rt] {
		if n > len(name) {
			break
		}
		if check(ix.byRes[resourceKey{rt, kmsg.ACLResourcePatternTypePrefixed, name[:n]}]) {
			return false
		}
	}
	if allowed {
		return true
	}
	return !anyACL && a.cfg.AllowEveryoneIfNoACLFound
}

// matchEntry is what binding b says about (principal, host, op): DENY,
// ALLOW, or UNKNOWN when it does not apply (Kafka's findResult).
func matchEntry(b Binding, principal, host string, op kmsg.ACLOperation) kmsg.ACLPermissionType {
	if b.Principal != principal && b.Principal != WildcardPrincipal {
		return kmsg.ACLPermissionTypeUnknown
	}
	if b.Host != WildcardHost && b.Host != host {
		return kmsg.ACLPermissionTypeUnknown
	}
	if b.Permission == kmsg.ACLPermissionTypeAllow {
		if !implies(b.Operation, op) {
			return kmsg.ACLPermissionTypeUnknown
		}
	} else if b.Operation != kmsg.ACLOperationAll && b.Operation != op {
		return kmsg.ACLPermissionTypeUnknown
	}
	return b.Permission
}

// AuthorizeByResourceType reports whether principal may perform op on at
// least one resource of type rt (Kafka's Authorizer.authorizeByResourceType,
// used by InitProducerId: WRITE on any topic grants idempotent writes). An
// ALLOW counts unless a DENY for the same literal name, a DENY prefix of
// its name, or a wildcard DENY covers it; the operation must match exactly
// (or be ALL), without implications.
func (a *Authorizer) AuthorizeByResourceType(principal, host string, op kmsg.ACLOperation, rt kmsg.ACLResourceType) bool {
	// Kafka first authorizes a made-up literal name, so super users (and
	// allow.everyone.if.no.acl.found) pass regardless of DENY bindings.
	if a.Authorize(principal, host, op, rt, "hardcode") {
		return true
	}
	ix := a.idx.Load()
	denyLit, denyPre := map[string]bool{}, map[string]bool{}
	var allowLit, allowPre []string
	for b := range ix.all {
		if b.ResourceType != rt || (b.Host != WildcardHost && b.Host != host) ||
			(b.Principal != principal && b.Principal != WildcardPrincipal) ||
			(b.Operation != op && b.Operation != kmsg.ACLOperationAll) {
			continue
		}
		lit := b.PatternType == kmsg.ACLResourcePatternTypeLiteral
		switch b.Permission {
		case kmsg.ACLPermissionTypeDeny:
			switch {
			case lit && b.ResourceName == WildcardResource:
				return false
			case lit:
				denyLit[b.ResourceName] = true
			default:
				denyPre[b.ResourceName] = true
			}
		case kmsg.ACLPermissionTypeAllow:
			switch {
			case lit && b.ResourceName == WildcardResource:
				return true
			case lit:
				allowLit = append(allowLit, b.ResourceName)
			default:
				allowPre = append(allowPre, b.ResourceName)
			}
		}
	}
	dominated := func(name string) bool {
		for i := 1; i <= len(name); i++ {
			if denyPre[name[:i]] {
				return true
			}
		}
		return false
	}
	for _, n := range allowLit {
		if !denyLit[n] && !dominated(n) {
			return true
		}
	}
	for _, n := range allowPre {
		if !dominated(n) {
			return true
		}
	}
	return false
}

// AuthorizedOperations is the bitfield (bit i = operation i) of the
// operations rt supports that principal may perform on (rt, name).
func (a *Authorizer) AuthorizedOperations(principal, host string, rt kmsg.ACLResourceType, name string) int32 {
	var bits int32
	for _, op := range supportedOps[rt] {
		if a.Authorize(principal, host, op, rt, name) {
			bits |= 1 << uint(op)
		}
	}
	return bits
}

// Create stores the valid bindings among bs; errs[i] says why bs[i] was
// not stored (errors.Is ErrInvalid or ErrTooMany, or the store's error).
// A binding that already exists is a success, as in Kafka.
func (a *Authorizer) Create(bs []Binding) []error {
	errs := make([]error, len(bs))
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.idx.Load()
	next := make(map[Binding]struct{}, len(cur.all)+len(bs))
	for b := range cur.all {
		next[b] = struct{}{}
	}
	var add []Binding
	var addAt []int
	for i, b := range bs {
		if err := b.Validate(); err != nil {
			errs[i] = err
			continue
		}
		if _, ok := next[b]; ok {
			continue
		}
		if len(next) >= a.cfg.MaxACLs {
			errs[i] = fmt.Errorf("%w: the broker holds at most %d ACLs", ErrTooMany, a.cfg.MaxACLs)
			continue
		}
		next[b] = struct{}{}
		add = append(add, b)
		addAt = append(addAt, i)
	}
	if len(add) == 0 {
		return errs
	}
	if a.store != nil {
		if err := a.store.ApplyACLs(add, nil); err != nil {
			for _, i := range addAt {
				errs[i] = err
			}
			return errs
		}
	}
	a.idx.Store(newIndex(next))
	return errs
}

// Delete removes the bindings each filter matches and returns them per
// filter; errs[i] says why filter i deleted nothing.
func (a *Authorizer) Delete(fs []Filter) ([][]Binding, []error) {
	out := make([][]Binding, len(fs))
	errs := make([]error, len(fs))
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.idx.Load()
	gone := map[Binding]bool{}
	var remove []Binding
	for i, f := range fs {
		if err := f.Validate(); err != nil {
			errs[i] = err
			continue
		}
		for b := range cur.all {
			if f.Matches(b) {
				out[i] = append(out[i], b)
				if !gone[b] {
					gone[b] = true
					remove = append(remove, b)
				}
			}
		}
		sortBindings(out[i])
	}
	if len(remove) == 0 {
		return out, errs
	}
	if a.store != nil {
		if err := a.store.ApplyACLs(nil, remove); err != nil {
			for i := range fs {
				if errs[i] == nil {
					errs[i], out[i] = err, nil
				}
			}
			return out, errs
		}
	}
	next := make(map[Binding]struct{}, len(cur.all))
	for b := range cur.all {
		if !gone[b] {
			next[b] = struct{}{}
		}
	}
	a.idx.Store(newIndex(next))
	return out, errs
}

// Describe returns the bindings f matches, sorted by resource.
func (a *Authorizer) Describe(f Filter) ([]Binding, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	var out []Binding
	for b := range a.idx.Load().all {
		if f.Matches(b) {
			out = append(out, b)
		}
	}
	sortBindings(out)
	return out, nil
}

// Len is the number of stored bindings.
func (a *Authorizer) Len() int { return len(a.idx.Load().all) }

func sortBindings(bs []Binding) {
	sort.Slice(bs, func(i, j int) bool {
		x, y := bs[i], bs[j]
		if x.ResourceType != y.ResourceType {
			return x.ResourceType < y.ResourceType
		}
		if x.PatternType != y.PatternType {
			return x.PatternType < y.PatternType
		}
		if x.ResourceName != y.ResourceName {
			return x.ResourceName < y.ResourceName
		}
		return x.String() < y.String()
	})
}
