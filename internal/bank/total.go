package bank

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrReadFailed wraps the error of a read that returned no values: it
// proves nothing either way (a node down, a link cut, a read that gave up
// waiting), unlike a read that returned the wrong total.
var ErrReadFailed = errors.New("read failed")

// Total is what every account together holds, whatever transfers run:
// transfers move money, never make or lose it.
func (b *Bank) Total() int64 {
	return int64(b.cfg.Nodes) * int64(b.cfg.AccountsPerNode) * b.cfg.Initial
}

// CheckTotal reads every account in one Read — which must be one
// consistent snapshot, taken while transfers run — and fails unless the
// balances add up to Total. A read that returns nothing fails with
// ErrReadFailed (errors.Is), so callers can tell a refused read from a
// wrong answer.
func (b *Bank) CheckTotal(c Client) error {
	keys := b.Accounts()
	got, err := c.Read(keys...)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrReadFailed, err)
	}
	var sum int64
	for _, k := range keys {
		v, ok := got[k]
		if !ok {
			return fmt.Errorf("read of every account returned no value for %s", k)
		}
		sum += v
	}
	if sum != b.Total() {
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, got[k]))
		}
		sort.Strings(parts)
		return fmt.Errorf("one read of every account adds up to %d, not %d (%+d): not a snapshot: %s",
			sum, b.Total(), sum-b.Total(), strings.Join(parts, " "))
	}
	return nil
}
