package scheduler

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pushd/pushd/dispatcher"
)

// wireBatch is a pushd.batch/v1 message whose notification is the
// campaign's JSON as stored, passed through unchanged (the field shadows
// dispatcher.Batch's).
type wireBatch struct {
	dispatcher.Batch
	Notification json.RawMessage `json:"notification"`
}

// builder renders the batches of one campaign (or test send). It is not
// safe for concurrent use.
type builder struct {
	msg     wireBatch
	recips  []dispatcher.Recipient
	checked bool // a body passed dispatcher.DecodeBatch
}

func newBuilder(c dispatcher.Campaign, notification json.RawMessage) *builder {
	b := &builder{}
	b.msg.Schema = dispatcher.Schema
	b.msg.Campaign = c
	b.msg.Notification = notification
	return b
}

// build returns the body of batch id carrying the longest prefix of rs
// that fits in dispatcher.MaxMessageBytes (all of rs, unless tokens or
// user ids are unusually long), and the length of that prefix. The first
// body a builder makes is checked with dispatcher.DecodeBatch: the
// notification and campaign are the same in every batch, so a campaign
// that breaks the schema is refused before anything is published, rather
// than dead-lettered batch by batch. Errors wrap errPermanent.
func (b *builder) build(id string, rs []Recipient, notBefore *time.Time) (body []byte, n int, err error) {
	b.recips = b.recips[:0]
	for _, r := range rs {
		b.recips = append(b.recips, dispatcher.Recipient{
			Platform: dispatcher.ParsePlatform(r.Platform), Token: r.Token, UserID: r.UserID,
		})
	}
	b.msg.BatchID = id
	b.msg.NotBefore = notBefore
	n = len(b.recips)
	if body, err = b.marshal(n); err != nil {
		return nil, 0, err
	}
	if len(body) > dispatcher.MaxMessageBytes {
		if n, err = b.fit(); err != nil {
			return nil, 0, err
		}
		if body, err = b.marshal(n); err != nil {
			return nil, 0, err
		}
	}
	if !b.checked {
		if _, err := dispatcher.DecodeBatch(body); err != nil {
			return nil, 0, fmt.Errorf("%w: batch %s: %v", errPermanent, id, err)
		}
		b.checked = true
	}
	return body, n, nil
}

func (b *builder) marshal(n int) ([]byte, error) {
	b.msg.Recipients = b.recips[:n]
	body, err := json.Marshal(&b.msg)
	if err != nil {
		return nil, fmt.Errorf("%w: batch %s: %v", errPermanent, b.msg.BatchID, err)
	}
	return body, nil
}

// fit returns how many of b.recips fit in one message: the message with
// no recipients, plus each recipient's JSON and a comma between two.
func (b *builder) fit() (int, error) {
	env, err := b.marshal(0)
	if err != nil {
		return 0, err
	}
	size := len(env)
	for i, r := range b.recips {
		rj, err := json.Marshal(r)
		if err != nil {
			return 0, fmt.Errorf("%w: batch %s: %v", errPermanent, b.msg.BatchID, err)
		}
		add := len(rj)
		if i > 0 {
			add++
		}
		if size+add > dispatcher.MaxMessageBytes {
			if i == 0 {
				return 0, fmt.Errorf("%w: batch %s: one recipient makes a message over %d bytes", errPermanent, b.msg.BatchID, dispatcher.MaxMessageBytes)
			}
			return i, nil
		}
		size += add
	}
	return len(b.recips), nil
}
