package broker

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"

	"github.com/oncelog/oncelog/auth"
	"github.com/oncelog/oncelog/internal/fsx"
	"github.com/oncelog/oncelog/meta"
)

// Users is the SCRAM credential store: users and their salted, hashed
// credentials in the metadata store (synced, so a user created is there
// after kill -9). The broker serves it as b.Users; `oncelog user
// --data-dir` opens it without a broker (OpenUsers) to bootstrap the
// first admin before the first start.
type Users struct {
	meta *meta.Store
	// mu orders changes, so that a delete's "did it exist" and its
	// deletion see no concurrent upsert in between.
	mu sync.Mutex
	// Set when opened by OpenUsers: it owns the store and the data dir lock.
	owned   bool
	dirLock io.Closer
}

// UserCredentialInfo describes a stored credential without its secrets.
type UserCredentialInfo struct {
	User       string
	Mechanism  string
	Iterations int
}

// OpenUsers opens the credential store of a data dir no broker is using:
// it takes the data dir lock (and fails, clearly, while a broker holds it).
// A missing data dir is created, so the first admin can be added before
// the first start.
func OpenUsers(fs fsx.FS, dataDir string, logger *slog.Logger) (*Users, error) {
	fs = fsx.Or(fs)
	if err := fsx.MkdirAll(fs, dataDir); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lock, err := lockDataDir(fs, dataDir)
	if err != nil {
		return nil, fmt.Errorf("%w; while a broker runs, use --brokers instead of --data-dir", err)
	}
	m, err := meta.Open(fs, filepath.Join(dataDir, "meta"), logger, nil)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &Users{meta: m, owned: true, dirLock: lock}, nil
}

// Close closes a store opened by OpenUsers; the broker's own is closed
// with the broker.
func (u *Users) Close() error {
	if !u.owned {
		return nil
	}
	err := u.meta.Close()
	if lerr := u.dirLock.Close(); err == nil {
		err = lerr
	}
	return err
}

// SCRAMCredential implements auth.Credentials.
func (u *Users) SCRAMCredential(user, mechanism string) (auth.Credential, bool, error) {
	c, ok, err := u.meta.ScramCredential(user, mechanism)
	if err != nil || !ok {
		return auth.Credential{}, false, err
	}
	return auth.Credential{Mechanism: c.Mechanism, Iterations: c.Iterations, Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey}, true, nil
}

// PutSCRAMCredential creates or replaces user's credential for its mechanism.
func (u *Users) PutSCRAMCredential(user string, c auth.Credential) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.meta.PutScramCredential(meta.ScramCredential{User: user, Mechanism: c.Mechanism, Iterations: c.Iterations,
		Salt: c.Salt, StoredKey: c.StoredKey, ServerKey: c.ServerKey})
}

// DeleteSCRAMCredential removes user's credential for mechanism; ok is
// false if there was none.
func (u *Users) DeleteSCRAMCredential(user, mechanism string) (ok bool, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.meta.DeleteScramCredential(user, mechanism)
}

// List describes every stored credential, by user then mechanism.
func (u *Users) List() ([]UserCredentialInfo, error) {
	all, err := u.meta.ScramCredentials()
	if err != nil {
		return nil, err
	}
	out := make([]UserCredentialInfo, len(all))
	for i, c := range all {
		out[i] = UserCredentialInfo{User: c.User, Mechanism: c.Mechanism, Iterations: c.Iterations}
	}
	return out, nil
}
