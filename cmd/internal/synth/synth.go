// Package synth generates synthetic campaigns: deterministic device tokens
// and batches of them, for pushctl, the benchmark tool and tests.
package synth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"iter"
	"strconv"

	"github.com/pushd/pushd/dispatcher"
)

// IOSToken returns the i-th synthetic APNs token of a campaign: 64 hex
// digits, the same on every call.
func IOSToken(campaign string, i int) string {
	h := sha256.Sum256([]byte(campaign + "/ios/" + strconv.Itoa(i)))
	return hex.EncodeToString(h[:])
}

// AndroidToken returns the i-th synthetic FCM registration token of a
// campaign, shaped like a real one.
func AndroidToken(campaign string, i int) string {
	h := sha256.Sum256([]byte(campaign + "/android/" + strconv.Itoa(i)))
	return hex.EncodeToString(h[:6]) + ":APA91b" + hex.EncodeToString(h[6:])
}

// Options describe a synthetic campaign.
type Options struct {
	Campaign   string
	Recipients int
	// BatchSize is the number of recipients per batch (default and at most
	// dispatcher.MaxRecipients).
	BatchSize int
	// IOSPercent is the share of iOS recipients, 0 to 100 (the rest are
	// Android). Recipient i is iOS when i%100 < IOSPercent.
	IOSPercent int
	// Rate is the campaign's rate_per_second (0: none).
	Rate float64
	// Test marks a test campaign (whitelist only).
	Test bool
	// Notification is what every recipient gets; a default one if empty.
	Notification dispatcher.Notification
}

// Recipient returns the i-th recipient of a campaign.
func (o Options) Recipient(i int) dispatcher.Recipient {
	if i%100 < o.IOSPercent {
		return dispatcher.Recipient{Platform: dispatcher.IOS, Token: IOSToken(o.Campaign, i), UserID: fmt.Sprintf("u-%d", i)}
	}
	return dispatcher.Recipient{Platform: dispatcher.Android, Token: AndroidToken(o.Campaign, i), UserID: fmt.Sprintf("u-%d", i)}
}

// Batches yields the campaign's batches in order.
func (o Options) Batches() iter.Seq[*dispatcher.Batch] {
	size := o.BatchSize
	if size <= 0 || size > dispatcher.MaxRecipients {
		size = dispatcher.MaxRecipients
	}
	n := o.Notification
	if n.Title == "" && n.Body == "" && len(n.Data) == 0 {
		n = dispatcher.Notification{Title: "Hello from pushd", Body: "campaign " + o.Campaign}
	}
	return func(yield func(*dispatcher.Batch) bool) {
		for start, seq := 0, 0; start < o.Recipients; start, seq = start+size, seq+1 {
			b := &dispatcher.Batch{
				Schema:       dispatcher.Schema,
				BatchID:      fmt.Sprintf("%s/%06d", o.Campaign, seq),
				Campaign:     dispatcher.Campaign{ID: o.Campaign, RatePerSecond: o.Rate, Test: o.Test},
				Notification: n,
			}
			for i := start; i < min(start+size, o.Recipients); i++ {
				b.Recipients = append(b.Recipients, o.Recipient(i))
			}
			if !yield(b) {
				return
			}
		}
	}
}
