package schemas_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/meter-dev/meter/schemas"
)

// fullEvent sets every field of an event to a distinct non-zero value, so a
// conversion that forgets a field shows up as a difference.
func fullEvent(t *testing.T) schemas.Event {
	t.Helper()
	var e schemas.Event
	v := reflect.ValueOf(&e).Elem()
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(v.Type().Field(i).Name + "-value")
		case reflect.Int, reflect.Int32, reflect.Int64:
			f.SetInt(int64(i + 1))
		case reflect.Struct:
			if f.Type() != reflect.TypeOf(time.Time{}) {
				t.Fatalf("field %s: no test value for %s", v.Type().Field(i).Name, f.Type())
			}
			f.Set(reflect.ValueOf(time.Date(2026, 11, 25, 10, 11, 12, 345e6, time.UTC)))
		default:
			t.Fatalf("field %s: no test value for %s", v.Type().Field(i).Name, f.Kind())
		}
	}
	return e
}

// TestRowConversionsKeepEveryField holds the event, events-table and
// daily-table conversions in step: each round trip gives the event back whole.
func TestRowConversionsKeepEveryField(t *testing.T) {
	e := fullEvent(t)
	er := schemas.NewEventRow(&e)
	if got := er.Event(); !reflect.DeepEqual(got, e) {
		t.Errorf("event -> events row -> event:\n got %+v\nwant %+v", got, e)
	}
	var d schemas.DailyRow
	d.SetEvent(&e)
	if got := d.Event(); !reflect.DeepEqual(got, e) {
		t.Errorf("event -> daily row -> event:\n got %+v\nwant %+v", got, e)
	}
	priced := schemas.NewDailyRow(&e, schemas.Costs{})
	if !reflect.DeepEqual(priced, d) {
		t.Errorf("NewDailyRow with zero costs differs from SetEvent:\n got %+v\nwant %+v", priced, d)
	}
}
