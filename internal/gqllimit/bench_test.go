package gqllimit_test

import (
	"testing"

	"github.com/jobqueue/jobqueue/internal/gqllimit"
)

// BenchmarkCheck prices what every request pays before gqlgen's own
// parse: a typical page query.
func BenchmarkCheck(b *testing.B) {
	const q = `query Jobs($type: String, $after: String) {
		jobs(type: $type, first: 500, after: $after) {
			totalCount
			pageInfo { hasNextPage endCursor }
			nodes { id type status attempts error errors { attempt message at } version finishedAt payload }
		}
	}`
	l := gqllimit.Limits{Tokens: 15000, Depth: 25, Aliases: 200, Directives: 200, FragmentSpreads: 200, Fields: 1000}
	for b.Loop() {
		if _, err := gqllimit.Check(q, l); err != nil {
			b.Fatal(err)
		}
	}
}
