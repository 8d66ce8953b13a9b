// The Books API from Java: grpc-java with messages and stubs generated from proto/ by protoc and
// grpc_java_plugin (run.sh). Usage: Client HOST:PORT. Checks what tests/interop/test_interop.py
// lists; exits 1 on the first failed expectation.
package com.example.books.interop;

import com.example.books.v1.Book;
import com.example.books.v1.BooksServiceGrpc;
import com.example.books.v1.CreateBookRequest;
import com.example.books.v1.GetBookRequest;
import com.example.books.v1.ListBooksRequest;
import com.example.books.v1.ListBooksResponse;
import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ResourceInfo;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

public final class Client {
    private static int passed = 0;

    private static void fail(String what) {
        System.out.println("interop-java: FAILED: " + what);
        System.exit(1);
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            fail(what);
        }
        passed++;
    }

    public static void main(String[] args) throws Exception {
        String target = args[0];
        ManagedChannel channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build();
        BooksServiceGrpc.BooksServiceBlockingStub stub = BooksServiceGrpc.newBlockingStub(channel)
                .withDeadlineAfter(60, TimeUnit.SECONDS);

        // 1. Create.
        List<Book> created = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            String id = "interop-" + i;
            Book book = Book.newBuilder().setDisplayName("Title " + id).addAuthors("Ann")
                    .addAuthors("Bo").setPublisher("Pub").build();
            Book got = stub.createBook(
                    CreateBookRequest.newBuilder().setBook(book).setBookId(id).build());
            if (!got.getName().equals("books/" + id)
                    || !got.toBuilder().clearName().build().equals(book)) {
                fail("CreateBook answered " + got);
            }
            created.add(got);
        }
        check(true, "create");

        // 2. Get.
        Book got = stub.getBook(GetBookRequest.newBuilder().setName(created.get(0).getName()).build());
        check(got.equals(created.get(0)), "GetBook answered " + got);

        // 3. List every page.
        List<String> seen = new ArrayList<>();
        List<String> want = new ArrayList<>();
        String token = "";
        int pages = 0;
        do {
            ListBooksResponse resp = stub.listBooks(
                    ListBooksRequest.newBuilder().setPageSize(2).setPageToken(token).build());
            if (resp.getBooksCount() > 2) {
                fail("a page of " + resp.getBooksCount() + " books for page_size 2");
            }
            resp.getBooksList().forEach(b -> seen.add(b.getName()));
            token = resp.getNextPageToken();
        } while (++pages < 100 && !token.isEmpty());
        created.forEach(b -> want.add(b.getName()));
        Collections.sort(seen);
        Collections.sort(want);
        check(seen.equals(want) && pages >= 3 && token.isEmpty(),
                "ListBooks gave " + seen + " in " + pages + " pages");

        // 4. NOT_FOUND with google.rpc.ResourceInfo (StatusProto decodes grpc-status-details-bin).
        try {
            stub.getBook(GetBookRequest.newBuilder().setName("books/no-such-book").build());
            fail("GetBook of a missing book succeeded");
        } catch (StatusRuntimeException e) {
            com.google.rpc.Status status = StatusProto.fromThrowable(e);
            boolean named = false;
            for (Any any : status == null ? List.<Any>of() : status.getDetailsList()) {
                if (any.is(ResourceInfo.class)) {
                    ResourceInfo ri = any.unpack(ResourceInfo.class);
                    named |= ri.getResourceName().equals("books/no-such-book")
                            && ri.getResourceType().equals("books.example.com/Book");
                }
            }
            check(e.getStatus().getCode() == Status.Code.NOT_FOUND && named,
                    "NOT_FOUND: " + e.getStatus() + " " + status);
        }

        // 5. INVALID_ARGUMENT with google.rpc.BadRequest.
        try {
            stub.createBook(CreateBookRequest.newBuilder().setBookId("no-title")
                    .setBook(Book.newBuilder().addAuthors("Ann").setPublisher("Pub")).build());
            fail("CreateBook without a display_name succeeded");
        } catch (StatusRuntimeException e) {
            com.google.rpc.Status status = StatusProto.fromThrowable(e);
            boolean named = false;
            for (Any any : status == null ? List.<Any>of() : status.getDetailsList()) {
                if (any.is(BadRequest.class)) {
                    for (BadRequest.FieldViolation v :
                            any.unpack(BadRequest.class).getFieldViolationsList()) {
                        named |= v.getField().equals("book.display_name");
                    }
                }
            }
            check(e.getStatus().getCode() == Status.Code.INVALID_ARGUMENT && named,
                    "INVALID_ARGUMENT: " + e.getStatus() + " " + status);
        }

        channel.shutdown().awaitTermination(10, TimeUnit.SECONDS);
        System.out.println("interop-java: " + passed + " passed, 0 failed");
    }
}
