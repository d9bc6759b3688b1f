package persistence

import (
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestOptionsValidateNamesFieldAndRule(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string // substring of the error; "" means valid
	}{
		{"empty dir", Options{}, "Options.Dir is empty"},
		{"empty dir after defaults", Options{}.WithDefaults(), "Options.Dir is empty"},
		{"empty dir with other fields set", Options{SnapshotEvery: 5, Logger: hclog.NewNullLogger()}, "Options.Dir is empty"},
		{"dir only", Options{Dir: "d"}, ""},
		{"snapshots disabled", Options{Dir: "d", SnapshotEvery: -1}, ""},
		{"any negative disables", Options{Dir: "d", SnapshotEvery: -7}, ""},
		{"explicit interval", Options{Dir: "d", SnapshotEvery: 1}, ""},
		{"defaulted", Options{Dir: "d"}.WithDefaults(), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.opts.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", c.opts, err)
			case c.want != "" && err == nil:
				t.Fatalf("Validate(%+v) = nil, want an error containing %q", c.opts, c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("Validate(%+v) = %q, want it to contain %q", c.opts, err, c.want)
			}
		})
	}
}

func TestOptionsWithDefaultsFillsOnlyUnsetFields(t *testing.T) {
	d := Options{Dir: "d"}.WithDefaults()
	if d.SnapshotEvery != DefaultSnapshotEvery {
		t.Errorf("unset SnapshotEvery became %d, want DefaultSnapshotEvery (%d)", d.SnapshotEvery, DefaultSnapshotEvery)
	}
	if d.Logger == nil {
		t.Error("unset Logger stayed nil")
	}
	if d.Dir != "d" || d.Written != nil {
		t.Errorf("fields without a default changed: Dir %q, Written set %v", d.Dir, d.Written != nil)
	}

	logger := hclog.NewNullLogger()
	for _, every := range []int{-3, -1, 1, 7, DefaultSnapshotEvery + 1} {
		got := Options{Dir: "d", SnapshotEvery: every, Logger: logger}.WithDefaults()
		if got.SnapshotEvery != every {
			t.Errorf("SnapshotEvery %d became %d: a set value must be kept as given", every, got.SnapshotEvery)
		}
		if got.Logger != logger {
			t.Errorf("SnapshotEvery %d: the given Logger was replaced", every)
		}
	}
}

func TestOpenRefusesInvalidOptionsAndCreatesNothing(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	l, err := Open(Options{SnapshotEvery: 3})
	if err == nil {
		l.Close()
		t.Fatal("Open with an empty Dir succeeded")
	}
	if !strings.Contains(err.Error(), "Options.Dir is empty") {
		t.Fatalf("Open error %q does not name the field", err)
	}
	entries, err := os.ReadDir(wd)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Fatalf("refused Open left files in the working directory: %v", entries)
	}
}

func TestOpenNegativeSnapshotEveryNeverSnapshots(t *testing.T) {
	l := openLog(t, t.TempDir(), -5)
	defer l.Close()
	if l.every != 0 {
		t.Fatalf("SnapshotEvery -5 gave every %d, want 0 (never)", l.every)
	}
}
