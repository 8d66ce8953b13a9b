# embed.cmake: turns a binary file into a C source defining `const unsigned char SYMBOL[]` and
# `const size_t SYMBOL_len`. Run with cmake -DIN=... -DOUT=... -DSYMBOL=... -P embed.cmake.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
# One line per 32 bytes keeps the generated file readable in a diff or a debugger.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" body "${body}")
get_filename_component(name "${IN}" NAME)
file(WRITE "${OUT}" "/* Generated from ${name} by cmake/embed.cmake at build time; do not edit. */\n"
  "#include <stddef.h>\n"
  "const unsigned char ${SYMBOL}[] = {\n${body}\n};\n"
  "const size_t ${SYMBOL}_len = sizeof ${SYMBOL};\n")
