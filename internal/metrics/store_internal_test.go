package metrics

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/jobqueue/jobqueue/internal/store"
)

// snake turns a method name into its operation label: CreateMany is
// create_many.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Every store method is timed under the operation named after it.
func TestEveryStoreMethodIsTimed(t *testing.T) {
	t.Parallel()
	st := reflect.TypeFor[store.Store]()
	for i := range st.NumMethod() {
		name := snake(st.Method(i).Name)
		if !slices.Contains(storeOpNames[:], name) {
			t.Errorf("store.%s is not timed (no operation %q)", st.Method(i).Name, name)
		}
	}
}
