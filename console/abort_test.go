package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oncelog/oncelog/console"
	"github.com/oncelog/oncelog/internal/testbroker"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestAbortRefusesTrackedTransaction: the console's abort button writes an
// ABORT marker only for a hanging transaction. One its coordinator tracks
// is listed as open but refused (409): a marker behind the coordinator's
// back could tear a transaction it then commits.
func TestAbortRefusesTrackedTransaction(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	txn, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.TransactionalID("tracked"), kgo.AllowAutoTopicCreation(),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, &kgo.Record{Topic: "ledger", Partition: 0, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	c, err := console.New(console.Config{Brokers: []string{b.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.Handler()

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/transactions", nil))
	var got struct {
		Transactions []struct {
			ID    string `json:"transactional_id"`
			State string `json:"state"`
		} `json:"transactions"`
		Open []struct {
			Topic      string `json:"topic"`
			ProducerID int64  `json:"producer_id"`
			Hanging    bool   `json:"hanging"`
		} `json:"open"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != 200 {
		t.Fatalf("transactions: %d %s", w.Code, w.Body)
	}
	if len(got.Transactions) != 1 || got.Transactions[0].ID != "tracked" || got.Transactions[0].State != "Ongoing" {
		t.Errorf("transactional ids: %+v, want tracked Ongoing", got.Transactions)
	}
	if len(got.Open) != 1 || got.Open[0].Topic != "ledger" || got.Open[0].Hanging {
		t.Fatalf("open transactions: %+v, want one on ledger, not hanging", got.Open)
	}

	body := fmt.Sprintf(`{"topic":"ledger","partition":0,"producer_id":%d}`, got.Open[0].ProducerID)
	post := func(body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "/api/transactions/abort", strings.NewReader(body))
		req.Header.Set("X-CSRF-Token", "open")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	w = post(body)
	if w.Code != 409 || !strings.Contains(w.Body.String(), "tracked by its coordinator") {
		t.Errorf("abort of a tracked transaction: %d %s, want 409", w.Code, w.Body)
	}
	w = post(`{"topic":"ledger","partition":0,"producer_id":999999}`)
	if w.Code != 404 {
		t.Errorf("abort of no transaction: %d %s, want 404", w.Code, w.Body)
	}
	// The transaction is untouched: it still commits.
	if err := txn.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Errorf("commit after the refused abort: %v", err)
	}
}
