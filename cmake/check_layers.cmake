# check_layers.cmake: every source file and public header includes only what its layer may use.
#   cmake -DSOURCE_DIR=<repo> -P cmake/check_layers.cmake
# Run by every build before any layer compiles (the check_layers target). The layers, bottom up:
#   base   src/base/,  include/books/<base headers>      libc, pthreads; libbsd's <bsd/stdlib.h>
#                                                         (strtonum) and no other libbsd header
#   store  src/store/, include/books/<store headers>     base; SQLite, libbsd, libpq
#   rpc    src/rpc/,   include/books/<rpc headers>       base; gRPC core, protobuf-c, zlib, protos
#   firestore src/firestore/, store_firestore.h          store, rpc (the codec, the status mapping),
#                                                         base: a store backend that is a gRPC client
#   api    src/api/,   include/books/<api headers>       rpc (not the server loop), store, base
#   cli    src/cli/,   include/books/<cli headers>       rpc (not the server loop), base
#   app    src/*.c                                        everything (main.c and config.c: wiring)
# Linking enforces the same rule for symbols (a layer's library links only the layers below it);
# this adds headers, which compile without their library: an enum or an inline is enough to couple
# a store backend to gRPC. Public headers are included as "books/x.h" or <books/x.h>, both checked.
# A private header (src/rpc/call.h, src/store/sqlite/sq.h, src/store/postgres/pg.h and rows.h)
# belongs to its folder: only files of that folder may include it.

cmake_policy(SET CMP0057 NEW)

# Which layer each public header belongs to.
set(base_headers arena budget error json log options resources text trace utf8 varint)
set(store_headers commit_pipeline record_cache store store_legacy store_postgres store_sqlite)
set(rpc_headers codec core_log rpc rpc_paths server status)
set(firestore_headers store_firestore)
set(api_headers health page_token reflection service)
set(cli_headers cli client)
set(app_headers config)

# The books/ headers each layer may include, and the other headers it must not.
set(base_may base)
set(store_may base store)
set(rpc_may base rpc)
set(firestore_may base store rpc firestore)
set(api_may base store rpc api)
set(cli_may base rpc cli)
set(app_may base store rpc firestore api cli app)
# Outside headers, by prefix. "books/v1/", "google/" and "grpc/" (quoted) are the generated protos.
set(no_grpc "<grpc/" "<protobuf-c/" "\"books/v1/" "\"google/" "\"grpc/" "<zlib.h>")
set(no_db "<sqlite3.h>" "<libpq-fe.h>")
set(base_banned ${no_grpc} ${no_db} "<openssl/" "<uuid/" "<bsd/")
# Exceptions to a layer's bans, whole headers: base takes strtonum(3) from libbsd (text.c).
set(base_allowed "<bsd/stdlib.h>")
set(store_banned ${no_grpc} "<openssl/" "<uuid/")
set(rpc_banned ${no_db})
set(firestore_banned ${no_db} "<openssl/")
set(api_banned ${no_db})
set(cli_banned ${no_db})
set(app_banned)
# The server loop is the rpc layer's own: services and the CLI speak rpc.h (the method table).
set(api_denied_headers server)
set(firestore_denied_headers server)
set(cli_denied_headers server)

function(header_layer header out)
  foreach(layer base store rpc firestore api cli app)
    if(header IN_LIST ${layer}_headers)
      set(${out} ${layer} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  set(${out} "" PARENT_SCOPE)
endfunction()

set(problems "")
function(check_file path layer)
  file(STRINGS "${path}" lines REGEX "^[ \t]*#[ \t]*include")
  foreach(line ${lines})
    string(REGEX MATCH "include[ \t]*([<\"][^>\"]*[>\"])" m "${line}")
    set(inc "${CMAKE_MATCH_1}")
    get_filename_component(dir "${path}" DIRECTORY)
    if(inc MATCHES "^\"([^\"]+)\"$" AND NOT inc MATCHES "^\"(books|google|grpc)/"
       AND EXISTS "${dir}/${CMAKE_MATCH_1}")
      # A private header, found beside the including file: it must stay in its folder.
      get_filename_component(hdir "${dir}/${CMAKE_MATCH_1}" DIRECTORY)
      get_filename_component(hdir "${hdir}" REALPATH)
      get_filename_component(rdir "${dir}" REALPATH)
      if(NOT hdir STREQUAL rdir)
        list(APPEND problems "${path} includes ${inc}, a private header of ${hdir}")
      endif()
    elseif(inc MATCHES "^[\"<]books/([a-z_0-9]+)\\.h[\">]$")
      set(h ${CMAKE_MATCH_1})
      header_layer(${h} hl)
      if(hl STREQUAL "")
        list(APPEND problems "${path}: includes books/${h}.h, which no layer owns (add it to cmake/check_layers.cmake)")
      elseif(NOT hl IN_LIST ${layer}_may)
        list(APPEND problems "${path} (${layer}) includes books/${h}.h of the ${hl} layer, above it")
      elseif(h IN_LIST ${layer}_denied_headers)
        list(APPEND problems "${path} (${layer}) includes books/${h}.h: use rpc.h, not the server loop")
      endif()
    elseif(NOT inc IN_LIST ${layer}_allowed)
      foreach(prefix ${${layer}_banned})
        string(FIND "${inc}" "${prefix}" at)
        if(at EQUAL 0)
          list(APPEND problems "${path} (${layer}) includes ${inc}, which the ${layer} layer may not use")
        endif()
      endforeach()
    endif()
  endforeach()
  set(problems "${problems}" PARENT_SCOPE)
endfunction()

foreach(layer base store rpc firestore api cli)
  file(GLOB_RECURSE sources "${SOURCE_DIR}/src/${layer}/*.c" "${SOURCE_DIR}/src/${layer}/*.h")
  foreach(f ${sources})
    check_file("${f}" ${layer})
  endforeach()
endforeach()
file(GLOB headers "${SOURCE_DIR}/include/books/*.h")
foreach(f ${headers})
  get_filename_component(h "${f}" NAME_WE)
  header_layer(${h} hl)
  if(hl STREQUAL "")
    list(APPEND problems "${f}: a public header no layer owns (add it to cmake/check_layers.cmake)")
  else()
    check_file("${f}" ${hl})
  endif()
endforeach()
file(GLOB app_sources "${SOURCE_DIR}/src/*.c")
foreach(f ${app_sources})
  check_file("${f}" app)
endforeach()

if(problems)
  list(JOIN problems "\n  " text)
  message(FATAL_ERROR "layering violations:\n  ${text}")
endif()
