// cppleak: a C++ service loop built the distribution way (-O2, no frame
// pointers). Each request keeps 1,000 bytes through operator new in
// app::Session::remember (the leak) and churns a 4 KiB std::vector in
// app::churn (freed at once). It prints "ready pid N", waits for SIGUSR1
// (so a tracer can attach first), serves -n requests (default 20000),
// prints "done kept BYTES bytes in N blocks", and waits to be killed.
//
// Build: c++ -O2 -g -fomit-frame-pointer -o cppleak cppleak.cpp
// (the tests look for the lines marked LINE: in their frames).
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <vector>

namespace app {

struct Session {
    std::vector<char *> kept;

    // The leak: every request's buffer is remembered, never freed.
    __attribute__((noinline)) void remember(std::size_t n)
    {
        char *p = new char[n]; // LINE: remember's new
        for (std::size_t i = 0; i < n; i += 64)
            p[i] = 1;
        kept.push_back(p);
    }
};

// Churn: a vector per request, gone when it returns.
__attribute__((noinline)) void churn(int i)
{
    std::vector<char> v(4096, static_cast<char>(i)); // LINE: churn's vector
    asm volatile("" : : "r"(v.data()) : "memory");
}

__attribute__((noinline)) void handle_request(Session &s, int i)
{
    s.remember(1000);
    churn(i);
}

} // namespace app

static volatile std::sig_atomic_t go = 0;

static void on_usr1(int) { go = 1; }

int main(int argc, char **argv)
{
    int n = 20000;
    for (int i = 1; i + 1 < argc; i++)
        if (argv[i][0] == '-' && argv[i][1] == 'n')
            n = std::atoi(argv[i + 1]);
    std::signal(SIGUSR1, on_usr1);
    std::printf("ready pid %d\n", static_cast<int>(getpid()));
    std::fflush(stdout);
    while (!go)
        pause();
    app::Session s;
    for (int i = 0; i < n; i++)
        app::handle_request(s, i);
    std::printf("done kept %zu bytes in %zu blocks\n", s.kept.size() * 1000, s.kept.size());
    std::fflush(stdout);
    for (;;)
        pause();
}
