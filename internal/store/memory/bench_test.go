package memory_test

import (
	"testing"

	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
)

func openBench(*testing.B) store.Store { return memory.New(nil) }

// BenchmarkClaimClosedBacklog: see storetest.BenchClaimClosedBacklog.
func BenchmarkClaimClosedBacklog(b *testing.B) { storetest.BenchClaimClosedBacklog(b, openBench) }

// BenchmarkFailRetryCycles: see storetest.BenchFailRetryCycles.
func BenchmarkFailRetryCycles(b *testing.B) { storetest.BenchFailRetryCycles(b, openBench) }

// BenchmarkCreateBatch: see storetest.BenchCreateBatch.
func BenchmarkCreateBatch(b *testing.B) { storetest.BenchCreateBatch(b, openBench) }
