package events_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/cloudevents/sdk-go/v2/client"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/example/users/functions/events"
	"github.com/example/users/internal/testenv"
)

// BenchmarkEvents measures one delivery through the composed service over
// loopback: a new event (one transaction creating a user) and a redelivery
// (one transaction reading the stored reply).
func BenchmarkEvents(b *testing.B) {
	srv, _, _ := testenv.Service(b, nil)
	c, err := client.NewHTTP(cehttp.WithTarget(srv.URL + "/"))
	if err != nil {
		b.Fatal(err)
	}
	deliver := func(id, name string) {
		e := event.New()
		e.SetID(id)
		e.SetSource("/bench")
		e.SetType(events.TypeCreate)
		_ = e.SetData("application/json", map[string]string{"username": name, "email": name + "@example.com"})
		_, res := c.Request(context.Background(), e)
		var hr *cehttp.Result
		if !protocol.ResultAs(res, &hr) || hr.StatusCode != http.StatusOK {
			b.Fatalf("delivery %s: %v", id, res)
		}
	}
	b.Run("new", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			deliver(fmt.Sprint("new-", i), fmt.Sprint("user", i))
		}
	})
	deliver("dup", "dup")
	b.Run("redelivery", func(b *testing.B) {
		for b.Loop() {
			deliver("dup", "dup")
		}
	})
}
