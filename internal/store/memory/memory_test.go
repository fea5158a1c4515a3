package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/jobqueue/jobqueue/internal/store"
	"github.com/jobqueue/jobqueue/internal/store/memory"
	"github.com/jobqueue/jobqueue/internal/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T, opts storetest.Options) store.Store {
		s, err := memory.NewWithOptions(memory.Options{Publisher: opts.Publisher, ErrorHistory: opts.ErrorHistory})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
