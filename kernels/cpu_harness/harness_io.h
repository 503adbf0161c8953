// harness_io.h -- file I/O and argv parsing for the CPU drivers of edgec's kernels.
//
// A driver is run as   <driver> <dir> <kernel entry> key=value ...
// and reads its inputs from raw little-endian binary files <dir>/<name>.bin (numpy's tofile),
// writes its outputs the same way. Sizes are checked: a short or long file aborts the run.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace harness {

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "harness: %s\n", what.c_str());
  std::exit(2);
}

template <class T>
std::vector<T> read(const std::string& dir, const std::string& name, size_t count) {
  const std::string path = dir + "/" + name + ".bin";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("cannot open " + path);
  std::fseek(f, 0, SEEK_END);
  const long bytes = std::ftell(f);
  std::fseek(f, 0, SEEK_SET);
  if (bytes != long(count * sizeof(T))) fail(path + ": expected " + std::to_string(count * sizeof(T)) + " bytes");
  std::vector<T> v(count ? count : 1);  // never hand the kernel a null pointer for an empty array
  if (count && std::fread(v.data(), sizeof(T), count, f) != count) fail("short read " + path);
  std::fclose(f);
  return v;
}

template <class T>
void write(const std::string& dir, const std::string& name, const std::vector<T>& v, size_t count) {
  const std::string path = dir + "/" + name + ".bin";
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (count && std::fwrite(v.data(), sizeof(T), count, f) != count)) fail("cannot write " + path);
  std::fclose(f);
}

// key=value arguments after argv[2]
struct Args {
  std::string dir, entry;
  std::map<std::string, std::string> kv;
  Args(int argc, char** argv) {
    if (argc < 3) fail("usage: driver <dir> <entry> key=value ...");
    dir = argv[1];
    entry = argv[2];
    for (int i = 3; i < argc; ++i) {
      std::string a = argv[i];
      const size_t eq = a.find('=');
      if (eq == std::string::npos) fail("bad argument " + a);
      kv[a.substr(0, eq)] = a.substr(eq + 1);
    }
  }
  const std::string& str(const std::string& k) const {
    auto it = kv.find(k);
    if (it == kv.end()) fail("missing argument " + k);
    return it->second;
  }
  int i(const std::string& k) const { return std::stoi(str(k)); }
  float f(const std::string& k) const { return std::stof(str(k)); }
  dim3 d3(const std::string& k) const {  // "x,y,z"
    unsigned a = 1, b = 1, c = 1;
    if (std::sscanf(str(k).c_str(), "%u,%u,%u", &a, &b, &c) != 3) fail("bad dim3 " + k);
    return dim3(a, b, c);
  }
};

}  // namespace harness
