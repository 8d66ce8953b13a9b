// The Books API from C++: gRPC C++ (libgrpc++) with messages and stubs generated from proto/ by
// protoc and grpc_cpp_plugin (run.sh). Usage: client HOST:PORT. Checks what
// tests/interop/test_interop.py lists; exits 1 on the first failed expectation.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/error_details.h>

#include "books/v1/books.grpc.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace {

int passed = 0;

void Fail(const std::string &what) {
    std::cout << "interop-cpp: FAILED: " << what << std::endl;
    std::exit(1);
}

void Check(bool ok, const std::string &what) {
    if (!ok)
        Fail(what);
    ++passed;
}

// A fresh context per call, each with a deadline.
std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return ctx;
}

// The details of type T in a google.rpc.Status.
template <typename T> std::vector<T> DetailsOf(const google::rpc::Status &status) {
    std::vector<T> out;
    for (const auto &any : status.details()) {
        T m;
        if (any.Is<T>() && any.UnpackTo(&m))
            out.push_back(m);
    }
    return out;
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::cerr << "usage: client HOST:PORT\n";
        return 2;
    }
    std::string target = argv[1];
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    auto stub = books::v1::BooksService::NewStub(channel);

    // 1. Create.
    std::vector<books::v1::Book> created;
    for (int i = 0; i < 5; i++) {
        std::string id = "interop-" + std::to_string(i);
        books::v1::CreateBookRequest req;
        req.set_book_id(id);
        req.mutable_book()->set_display_name("Title " + id);
        req.mutable_book()->add_authors("Ann");
        req.mutable_book()->add_authors("Bo");
        req.mutable_book()->set_publisher("Pub");
        books::v1::Book got;
        grpc::Status st = stub->CreateBook(Ctx().get(), req, &got);
        if (!st.ok() || got.name() != "books/" + id || got.display_name() != "Title " + id ||
            got.authors_size() != 2 || got.authors(1) != "Bo" || got.publisher() != "Pub")
            Fail("CreateBook: " + st.error_message() + " " + got.ShortDebugString());
        created.push_back(got);
    }
    Check(true, "create");

    // 2. Get.
    {
        books::v1::GetBookRequest req;
        req.set_name(created[0].name());
        books::v1::Book got;
        grpc::Status st = stub->GetBook(Ctx().get(), req, &got);
        Check(st.ok() && got.SerializeAsString() == created[0].SerializeAsString(),
              "GetBook: " + st.error_message() + " " + got.ShortDebugString());
    }

    // 3. List every page.
    {
        std::vector<std::string> seen;
        std::string token;
        int pages = 0;
        do {
            books::v1::ListBooksRequest req;
            req.set_page_size(2);
            req.set_page_token(token);
            books::v1::ListBooksResponse resp;
            grpc::Status st = stub->ListBooks(Ctx().get(), req, &resp);
            if (!st.ok() || resp.books_size() > 2)
                Fail("ListBooks: " + st.error_message() + " " + resp.ShortDebugString());
            for (const auto &b : resp.books())
                seen.push_back(b.name());
            token = resp.next_page_token();
        } while (++pages < 100 && !token.empty());
        std::vector<std::string> want;
        for (const auto &b : created)
            want.push_back(b.name());
        std::sort(seen.begin(), seen.end());
        std::sort(want.begin(), want.end());
        Check(seen == want && pages >= 3 && token.empty(),
              "ListBooks: not every created book exactly once in 3 or more pages");
    }

    // 4. NOT_FOUND with google.rpc.ResourceInfo.
    {
        books::v1::GetBookRequest req;
        req.set_name("books/no-such-book");
        books::v1::Book got;
        grpc::Status st = stub->GetBook(Ctx().get(), req, &got);
        google::rpc::Status status;
        bool decoded = grpc::ExtractErrorDetails(st, &status).ok();
        bool named = false;
        for (const auto &ri : DetailsOf<google::rpc::ResourceInfo>(status))
            named |= ri.resource_name() == "books/no-such-book" &&
                     ri.resource_type() == "books.example.com/Book";
        Check(st.error_code() == grpc::StatusCode::NOT_FOUND && decoded && status.code() == 5 &&
                  named,
              "NOT_FOUND: " + std::to_string(st.error_code()) + " " + status.ShortDebugString());
    }

    // 5. INVALID_ARGUMENT with google.rpc.BadRequest.
    {
        books::v1::CreateBookRequest req;
        req.set_book_id("no-title");
        req.mutable_book()->add_authors("Ann");
        req.mutable_book()->set_publisher("Pub");
        books::v1::Book got;
        grpc::Status st = stub->CreateBook(Ctx().get(), req, &got);
        google::rpc::Status status;
        bool decoded = grpc::ExtractErrorDetails(st, &status).ok();
        bool named = false;
        for (const auto &br : DetailsOf<google::rpc::BadRequest>(status))
            for (const auto &v : br.field_violations())
                named |= v.field() == "book.display_name";
        Check(st.error_code() == grpc::StatusCode::INVALID_ARGUMENT && decoded && named,
              "INVALID_ARGUMENT: " + std::to_string(st.error_code()) + " " +
                  status.ShortDebugString());
    }

    std::cout << "interop-cpp: " << passed << " passed, 0 failed" << std::endl;
    return 0;
}
