// A minimal check macro for the plain C++ unit tests of ops/lib (no test framework here):
// EXPECT(cond) prints the failed condition and counts it; main() reports ExpectFailures().
#ifndef TFCOMP_OPS_LIB_EXPECT_H_
#define TFCOMP_OPS_LIB_EXPECT_H_

#include <cstdio>

inline int& ExpectFailures() {
  static int failures = 0;
  return failures;
}

#define EXPECT(cond)                                                  \
  do {                                                                \
    if (!(cond)) {                                                    \
      std::printf("%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
      ++ExpectFailures();                                             \
    }                                                                 \
  } while (0)

// What main() returns: prints "all passed" or the count of failures.
inline int ExpectResult() {
  std::printf(ExpectFailures() ? "%d failed\n" : "all passed\n", ExpectFailures());
  return ExpectFailures() ? 1 : 0;
}

#endif  // TFCOMP_OPS_LIB_EXPECT_H_
