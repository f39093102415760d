package broker

import "testing"

// TestReleaseTxnKeysReleasesOnlyThatTransaction: a marker releases the keys
// its own transaction holds in its partition, and none of another
// transaction's, including a key that one took over.
func TestReleaseTxnKeysReleasesOnlyThatTransaction(t *testing.T) {
	tk := &topicKeys{inTxn: map[string]txnKey{}, txnHeld: map[txnKey][]string{}}
	a0 := txnKey{producerID: 1, partition: 0}
	a1 := txnKey{producerID: 1, partition: 1}
	b0 := txnKey{producerID: 2, partition: 0}
	tk.mu.Lock()
	tk.holdForTxn("k1", a0)
	tk.holdForTxn("k2", a0)
	tk.holdForTxn("k3", a1)
	tk.holdForTxn("k4", b0)
	tk.holdForTxn("k2", b0) // taken over by producer 2
	tk.mu.Unlock()

	tk.releaseTxnKeys(1, 0)
	want := map[string]txnKey{"k2": b0, "k3": a1, "k4": b0}
	if len(tk.inTxn) != len(want) {
		t.Fatalf("held after releasing (1,0): %v, want %v", tk.inTxn, want)
	}
	for k, o := range want {
		if tk.inTxn[k] != o {
			t.Fatalf("key %s held by %v, want %v", k, tk.inTxn[k], o)
		}
	}
	if _, ok := tk.txnHeld[a0]; ok {
		t.Fatalf("released transaction still listed: %v", tk.txnHeld)
	}

	tk.releaseTxnKeys(2, 0)
	tk.releaseTxnKeys(1, 1)
	if len(tk.inTxn) != 0 || len(tk.txnHeld) != 0 {
		t.Fatalf("after every marker: inTxn %v, txnHeld %v", tk.inTxn, tk.txnHeld)
	}
}

// BenchmarkReleaseTxnKeys: one marker among 10,000 open transactions of 10
// keys each; the cost of a release is that transaction's keys, not all held.
func BenchmarkReleaseTxnKeys(b *testing.B) {
	const open, perTxn = 10000, 10
	tk := &topicKeys{inTxn: map[string]txnKey{}, txnHeld: map[txnKey][]string{}}
	key := func(pid int64, i int) string { return string(rune(pid)) + "/" + string(rune(i)) }
	tk.mu.Lock()
	for pid := int64(0); pid < open; pid++ {
		for i := range perTxn {
			tk.holdForTxn(key(pid, i), txnKey{producerID: pid})
		}
	}
	tk.mu.Unlock()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		pid := int64(n % open)
		tk.releaseTxnKeys(pid, 0)
		tk.mu.Lock()
		for i := range perTxn {
			tk.holdForTxn(key(pid, i), txnKey{producerID: pid})
		}
		tk.mu.Unlock()
	}
}
