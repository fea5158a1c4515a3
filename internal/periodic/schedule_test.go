package periodic_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jobqueue/jobqueue/internal/domain"
	"github.com/jobqueue/jobqueue/internal/periodic"
)

func TestParseRefusesBadInputNamingTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ schedule, timezone, field string }{
		{"not a cron", "UTC", "schedule"},
		{"61 * * * *", "UTC", "schedule"},
		{"", "UTC", "schedule"},
		{"@every 500ms", "UTC", "schedule"},
		{"@every 1.5s", "UTC", "schedule"},
		{"0 0 30 2 *", "UTC", "schedule"},
		{"TZ=Europe/Paris 0 9 * * *", "UTC", "schedule"},
		{"@hourly", "Mars/Olympus_Mons", "timezone"},
		{"@hourly", "", "timezone"},
		{"@hourly", "Local", "timezone"},
		{"0 0 * * *" + strings.Repeat(" ", periodic.MaxScheduleLength), "UTC", "schedule"},
		{"@hourly", "Europe/" + strings.Repeat("x", periodic.MaxTimezoneLength), "timezone"},
	} {
		_, err := periodic.Parse(tc.schedule, tc.timezone)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("Parse(%q, %q) = %v; want a validation error on %s", tc.schedule, tc.timezone, err, tc.field)
		}
	}
}

func TestParseReadsEachForm(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 10, 8, 59, 30, 0, time.UTC)
	for _, tc := range []struct {
		schedule, timezone string
		next               time.Time
	}{
		{"*/5 * * * *", "UTC", time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)},
		{"*/20 * * * * *", "UTC", time.Date(2026, 3, 10, 8, 59, 40, 0, time.UTC)},
		{"@hourly", "UTC", time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)},
		{"@daily", "Asia/Tokyo", time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)}, // midnight in Tokyo (UTC+9)
		{"@every 45s", "UTC", time.Date(2026, 3, 10, 9, 0, 15, 0, time.UTC)},
		{"0 9 * * *", "America/New_York", time.Date(2026, 3, 10, 13, 0, 0, 0, time.UTC)}, // daylight saving time began on 8 March
	} {
		s, err := periodic.Parse(tc.schedule, tc.timezone)
		if err != nil {
			t.Errorf("Parse(%q, %q): %v", tc.schedule, tc.timezone, err)
			continue
		}
		if got := s.Next(at); !got.Equal(tc.next) {
			t.Errorf("%q in %s: next after %v = %v; want %v", tc.schedule, tc.timezone, at, got, tc.next)
		}
	}
}

// Latest finds the one tick to catch up on after an outage: the last one
// due, for both kinds of schedule, however long the outage.
func TestLatestIsTheLastTickDue(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		schedule    string
		after, upTo time.Time
		want        time.Time // zero: none due
	}{
		{"@every 1s", from, from.Add(90*24*time.Hour + 500*time.Millisecond), from.Add(90 * 24 * time.Hour)},
		{"@every 7s", from, from.Add(20 * time.Second), from.Add(14 * time.Second)},
		{"@every 7s", from, from.Add(6 * time.Second), time.Time{}},
		{"*/1 * * * * *", from, from.Add(400*24*time.Hour + 1500*time.Millisecond), from.Add(400*24*time.Hour + time.Second)},
		{"0 * * * *", from, from.Add(5*time.Hour + 30*time.Minute), from.Add(5 * time.Hour)},
		{"0 0 1 1 *", from, from.Add(3 * 365 * 24 * time.Hour), time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"0 * * * *", from, from.Add(59 * time.Minute), time.Time{}},
	} {
		s, err := periodic.Parse(tc.schedule, "UTC")
		if err != nil {
			t.Fatal(err)
		}
		got, due := s.Latest(tc.after, tc.upTo)
		if due != !tc.want.IsZero() || !got.Equal(tc.want) {
			t.Errorf("%q: latest in (%v, %v] = %v, %v; want %v", tc.schedule, tc.after, tc.upTo, got, due, tc.want)
		}
	}
}

// Between counts the ticks strictly between two times: those a catch-up
// on the later one skips.
func TestBetweenCountsTheTicksSkipped(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 10, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		schedule      string
		after, before time.Time
		want          int
	}{
		{"0 * * * *", at, at.Add(5 * time.Hour), 4},
		{"0 * * * *", at, at.Add(time.Hour), 0},
		{"0 * * * *", at.Add(-time.Minute), at, 0},
		{"*/15 * * * *", at, at.Add(time.Hour + time.Minute), 4},
		{"@every 1h", at, at.Add(5 * time.Hour), 4},
		{"@every 1h", at, at.Add(time.Hour), 0},
		{"@every 10s", at, at.Add(24 * time.Hour), 8639},
		{"* * * * * *", at, at.Add(48 * time.Hour), 1000}, // counted up to the bound
	} {
		s, err := periodic.Parse(tc.schedule, "UTC")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Between(tc.after, tc.before); got != tc.want {
			t.Errorf("%q.Between(%v, %v) = %d, want %d", tc.schedule, tc.after, tc.before, got, tc.want)
		}
	}
}
