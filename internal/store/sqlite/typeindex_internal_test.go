package sqlite

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jobqueue/jobqueue/internal/domain"
)

// queryPlan returns the EXPLAIN QUERY PLAN lines of query.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.rdb.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		out.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// When closed types hold many pending jobs, a claim picks type by type,
// and the statements it runs then read jobs_type_runnable by type: the
// open types' runnable ranges and one entry per type, never the closed
// types' backlogs. With few such jobs it walks jobs_runnable as before.
func TestClaimPastClosedBacklogSeeksByType(t *testing.T) {
	t.Parallel()
	s := openTest(t)
	ctx := context.Background()
	for query, want := range map[string][]string{
		typeCandidates: {"(type=?)", "(type=? AND priority<?)", "(type=? AND priority=? AND run_at<?)"},
		pendingTypes:   {"(type>?)"},
	} {
		plan := queryPlan(t, s, query, 0, "t", 10)
		if strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("plan\n%s\nsorts", plan)
		}
		for _, line := range strings.Split(strings.TrimSpace(plan), "\n") {
			if strings.Contains(line, " jobs ") && !strings.Contains(line, "INDEX jobs_type_runnable") {
				t.Errorf("plan\n%s\nreads jobs other than by jobs_type_runnable: %s", plan, line)
			}
		}
		for _, w := range want {
			if !strings.Contains(plan, "SEARCH jobs USING COVERING INDEX jobs_type_runnable "+w) {
				t.Errorf("plan\n%s\nhas no search of jobs_type_runnable %s", plan, w)
			}
		}
	}

	byType := func() bool {
		t.Helper()
		var got bool
		err := s.write(ctx, func(w *writeTx) error {
			var err error
			got, err = w.pickByType([]string{"closed"}, 10)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	create := func(typ string, n int) {
		t.Helper()
		njs := make([]domain.NewJob, n)
		for i := range njs {
			njs[i] = domain.NewJob{Type: typ}
		}
		if _, err := s.CreateMany(ctx, njs); err != nil {
			t.Fatal(err)
		}
	}
	create("open", 5)
	create("closed", byTypeAbove)
	if byType() {
		t.Fatalf("%d pending jobs of a closed type: picks by type, want one walk", byTypeAbove)
	}
	create("closed", 2000)
	if !byType() {
		t.Fatalf("%d pending jobs of a closed type: walks them, want picks by type", 2000+byTypeAbove)
	}
	for i := range 100 {
		create(fmt.Sprint("open-", i), 1)
	}
	if byType() {
		t.Fatal("101 open types, 2064 jobs of a closed type: picks by type, want one walk")
	}
}
