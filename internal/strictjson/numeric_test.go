package strictjson

import (
	"encoding/json"
	"errors"
	"testing"
)

// numericCases are numbers at and past the edges of PostgreSQL's numeric
// range, with whether PostgreSQL 15 stores them as jsonb (each checked with
// psql; TestStorableNumberAgreesWithPostgreSQL in internal/store checks them
// and more against the server the tests run on).
var numericCases = []struct {
	num      string
	storable bool
}{
	{"0", true}, {"-1.5", true}, {"1e131071", true}, {"1E+131071", true}, {"9.9e131071", true},
	{"0.1e131072", true}, {"123456789e131063", true}, {"1e-16383", true}, {"1e-0016383", true},
	{"0.0e-16382", true}, {"0.5e-16382", true}, {"0e-16383", true}, {"0e999999", true},
	{"0e1073741822", true}, {"1e0000000000000001", true},
	{"1e131072", false}, {"-1e131072", false}, {"10e131071", false}, {"123456789e131064", false},
	{"1e-16384", false}, {"1.5e-16383", false}, {"1.0e-16383", false}, {"10e-16384", false},
	{"15e-16384", false}, {"0e-99999", false}, {"-0e-16384", false}, {"0.00e-16384", false},
	{"100e-16385", false}, {"0e1073741823", false}, {"5e1073741822", false}, {"1e-1073741823", false},
	{"1e99999999999999999999", false},
}

func TestStorableNumber(t *testing.T) {
	t.Parallel()
	for _, c := range numericCases {
		if got := StorableNumber([]byte(c.num)); got != c.storable {
			t.Errorf("StorableNumber(%s) = %v, want %v", c.num, got, c.storable)
		}
	}
}

func TestUnmarshalRefusesUnstorableNumbers(t *testing.T) {
	t.Parallel()
	type args struct {
		Args json.RawMessage `json:"args"`
		F    float64         `json:"f"`
	}
	for _, c := range []struct{ doc, field string }{
		{`{"args":{"n":1e131072}}`, "args.n"},
		{`{"args":[1,2,1e-16384]}`, "args[2]"},
		{`{"args":1.0e-16383}`, "args"},
		{`{"f":1e-16384}`, "f"},
	} {
		var v args
		var jerr *Error
		if err := Unmarshal([]byte(c.doc), &v); !errors.As(err, &jerr) || jerr.Field != c.field || jerr.Message != NumberRangeMessage {
			t.Errorf("%s: err = %v, want %q naming %q", c.doc, err, NumberRangeMessage, c.field)
		}
	}
	var v args
	if err := Unmarshal([]byte(`{"args":{"n":1e131071,"s":"1e131072"},"f":1e-300}`), &v); err != nil {
		t.Errorf("numbers in range and a string: %v", err)
	}
}

func TestFindUnstorableNumber(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		doc    string
		offset int
		found  bool
	}{
		{`{"a":1,"b":[2,1e131072]}`, 14, true},
		{`1e-16384`, 0, true},
		{`{"s":"1e131072","t":"\"","n":-0e-16384}`, 29, true},
		{`{"s":"1e131072","n":1e131071}`, 0, false},
		{`[true,null,0.5]`, 0, false},
	} {
		offset, found := FindUnstorableNumber([]byte(c.doc))
		if offset != c.offset || found != c.found {
			t.Errorf("FindUnstorableNumber(%s) = %d, %v, want %d, %v", c.doc, offset, found, c.offset, c.found)
		}
	}
}
