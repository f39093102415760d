package brokerproc

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// readyzInterval is the pause between /readyz polls.
const readyzInterval = 25 * time.Millisecond

// WaitReadyz polls the admin listener's /readyz until it answers 200 (the
// broker finished recovery and serves clients), the process exits (exited
// closes), ctx ends or timeout passes.
func (p *Process) WaitReadyz(ctx context.Context, exited <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + p.AdminAddr + "/readyz"
	ticker := time.NewTicker(readyzInterval)
	defer ticker.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("process exited before it was ready: %v", p.ExitErr())
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v: %w", timeout, ctx.Err())
		case <-ticker.C:
		}
	}
}
