package wire

import (
	"reflect"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxInt16String is the longest string a non-flexible protocol version can
// carry: its length prefix is an int16. kmsg would write a longer string's
// length modulo 2^16, a malformed frame the client cannot parse.
const maxInt16String = 1<<15 - 1

// fitStrings cuts, at a UTF-8 boundary, every string of a non-flexible
// response that is longer than an int16 string can carry, and reports the
// field. The coordinators refuse ids that long where they are created (see
// the group package), so this is the last line for what slips through,
// such as an error message quoting a long input: a shortened string in a
// well-formed answer beats a frame no client can read.
func fitStrings(resp kmsg.Response, onCut func(field string)) {
	if resp.IsFlexible() {
		return
	}
	fitValue(reflect.ValueOf(resp), "", onCut)
}

func fitValue(v reflect.Value, path string, onCut func(string)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			fitValue(v.Elem(), path, onCut)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			if !t.Field(i).IsExported() {
				continue
			}
			name := t.Field(i).Name
			if path != "" {
				name = path + "." + name
			}
			fitValue(v.Field(i), name, onCut)
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // bytes: int32 lengths
		}
		for i := range v.Len() {
			fitValue(v.Index(i), path, onCut)
		}
	case reflect.String:
		if s := v.String(); len(s) > maxInt16String && v.CanSet() {
			cut := maxInt16String
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			v.SetString(s[:cut])
			onCut(path)
		}
	}
}
