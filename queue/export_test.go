package queue

import "github.com/pushd/pushd/dispatcher"

// CloseHandled returns a channel that is closed once the close of d's
// channel (by the consumer, the broker or a lost connection) is handled:
// by then every delivery of that channel that is lost reports it.
func CloseHandled(d dispatcher.Delivery) <-chan struct{} { return d.Acker.(*Acker).t.handled }

// IsClosed reports whether c is closed, without waiting.
var IsClosed = isClosed
