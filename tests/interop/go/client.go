// The Books API from Go: grpc-go with messages and stubs generated from proto/ by protoc-gen-go
// and protoc-gen-go-grpc (run.sh). Usage: client HOST:PORT. Checks what
// tests/interop/test_interop.py lists; exits 1 on the first failed expectation.
package main

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sort"
	"time"

	booksv1 "books.example.com/genproto/books/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

var passed int

func fail(format string, args ...interface{}) {
	fmt.Printf("interop-go: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		fail(format, args...)
	}
	passed++
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: client HOST:PORT")
		os.Exit(2)
	}
	target := os.Args[1]
	conn, err := grpc.Dial(target, grpc.WithInsecure())
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	client := booksv1.NewBooksServiceClient(conn)
	// One deadline for every call of the run.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// 1. Create.
	var created []*booksv1.Book
	for i := 0; i < 5; i++ {
		id := fmt.Sprintf("interop-%d", i)
		book := &booksv1.Book{DisplayName: "Title " + id, Authors: []string{"Ann", "Bo"}, Publisher: "Pub"}
		got, err := client.CreateBook(ctx, &booksv1.CreateBookRequest{Book: book, BookId: id})
		if err != nil || got.Name != "books/"+id || got.DisplayName != book.DisplayName ||
			!reflect.DeepEqual(got.Authors, book.Authors) || got.Publisher != "Pub" {
			fail("CreateBook: %v %v", err, got)
		}
		created = append(created, got)
	}
	check(true, "create")

	// 2. Get.
	got, err := client.GetBook(ctx, &booksv1.GetBookRequest{Name: created[0].Name})
	check(err == nil && proto.Equal(got, created[0]), "GetBook: %v %v", err, got)

	// 3. List every page.
	var seen, want []string
	pages, token := 0, ""
	for {
		resp, err := client.ListBooks(ctx, &booksv1.ListBooksRequest{PageSize: 2, PageToken: token})
		if err != nil || len(resp.Books) > 2 {
			fail("ListBooks: %v %v", err, resp)
		}
		pages++
		for _, b := range resp.Books {
			seen = append(seen, b.Name)
		}
		token = resp.NextPageToken
		if token == "" || pages >= 100 {
			break
		}
	}
	for _, b := range created {
		want = append(want, b.Name)
	}
	sort.Strings(seen)
	sort.Strings(want)
	check(reflect.DeepEqual(seen, want) && pages >= 3 && token == "",
		"ListBooks: %v in %d pages", seen, pages)

	// 4. NOT_FOUND with google.rpc.ResourceInfo (status.FromError decodes grpc-status-details-bin).
	_, err = client.GetBook(ctx, &booksv1.GetBookRequest{Name: "books/no-such-book"})
	st, _ := status.FromError(err)
	named := false
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.ResourceInfo); ok {
			named = named || (ri.ResourceName == "books/no-such-book" &&
				ri.ResourceType == "books.example.com/Book")
		}
	}
	check(st.Code() == codes.NotFound && named, "NOT_FOUND: %v %v", st.Code(), st.Details())

	// 5. INVALID_ARGUMENT with google.rpc.BadRequest.
	_, err = client.CreateBook(ctx, &booksv1.CreateBookRequest{
		Book: &booksv1.Book{Authors: []string{"Ann"}, Publisher: "Pub"}, BookId: "no-title"})
	st, _ = status.FromError(err)
	named = false
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				named = named || v.Field == "book.display_name"
			}
		}
	}
	check(st.Code() == codes.InvalidArgument && named, "INVALID_ARGUMENT: %v %v", st.Code(), st.Details())

	fmt.Printf("interop-go: %d passed, 0 failed\n", passed)
}
