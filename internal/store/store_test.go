package store

import (
	"errors"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
)

func TestErrorHistory(t *testing.T) {
	t.Parallel()
	for option, want := range map[int]int{0: domain.DefaultErrorHistory, 1: 1, 25: 25, domain.MaxErrorHistory: domain.MaxErrorHistory} {
		if got, err := ErrorHistory(option); got != want || err != nil {
			t.Errorf("ErrorHistory(%d) = %d, %v; want %d", option, got, err, want)
		}
	}
	for _, option := range []int{-1, domain.MaxErrorHistory + 1} {
		if _, err := ErrorHistory(option); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("ErrorHistory(%d): %v, want ErrInvalid", option, err)
		}
	}
}
