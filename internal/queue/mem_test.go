package queue_test

import (
	"testing"

	"edgegw/internal/queue"
	"edgegw/internal/queue/queuetest"
)

func TestMemQueueConformance(t *testing.T) {
	queuetest.Run(t, func(*testing.T) queue.Queue { return queue.NewMem(nil) })
}
