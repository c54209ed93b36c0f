// Translation unit that carries the precompiled headers (see CMakeLists.txt).
