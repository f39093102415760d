package broker

import (
	"fmt"
	"sync"

	"github.com/oncelog/oncelog/acl"
	"github.com/oncelog/oncelog/meta"
	"github.com/prometheus/client_golang/prometheus"
)

// Authorizer names (--authorizer).
const (
	AuthorizerNone = "none"
	AuthorizerACL  = "acl"
)

func openAuthorizer(cfg Config, store *meta.Store) (*acl.Authorizer, error) {
	switch cfg.Authorizer {
	case "", AuthorizerNone:
		return nil, nil
	case AuthorizerACL:
		return acl.New(acl.Config{SuperUsers: cfg.SuperUsers, AllowEveryoneIfNoACLFound: cfg.AllowEveryoneIfNoACLFound}, store)
	default:
		return nil, fmt.Errorf("unknown authorizer %q (want %s or %s)", cfg.Authorizer, AuthorizerNone, AuthorizerACL)
	}
}

// maxDenialPrincipals bounds the principal label of
// oncelog_authorization_denied_total: principals are client-chosen names
// (any SCRAM user, any certificate subject), so past this many the rest
// are counted as "other".
const maxDenialPrincipals = 100

// Denials counts authorization denials by principal and API with a bounded
// number of principal label values.
type Denials struct {
	vec  *prometheus.CounterVec
	mu   sync.Mutex
	seen map[string]bool
}

func newDenials(r *prometheus.Registry) *Denials {
	d := &Denials{seen: map[string]bool{}, vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oncelog_authorization_denied_total",
		Help: "Requests (or parts of requests: a topic, a group) refused by the ACL authorizer, by principal and API. The first 100 principals denied get their own label value, later ones are counted as principal=\"other\".",
	}, []string{"principal", "api"})}
	r.MustRegister(d.vec)
	return d
}

// Inc counts one denial.
func (d *Denials) Inc(principal, api string) {
	d.mu.Lock()
	if !d.seen[principal] {
		if len(d.seen) >= maxDenialPrincipals {
			principal = "other"
		} else {
			d.seen[principal] = true
		}
	}
	d.mu.Unlock()
	d.vec.WithLabelValues(principal, api).Inc()
}
