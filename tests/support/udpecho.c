/* A UDP echo server for test images, whose busybox has no UDP listener:
 * `udpecho PORT` sends every datagram back to where it came from, on IPv6 and IPv4
 * (a dual-stack socket, or IPv4 alone where the namespace has no IPv6). */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	struct sockaddr_in6 six = { .sin6_family = AF_INET6 };
	struct sockaddr_in four = { .sin_family = AF_INET };
	struct sockaddr_storage peer;
	char buffer[65536];
	int off = 0, fd;

	if (argc != 2) {
		fprintf(stderr, "usage: udpecho PORT\n");
		return 2;
	}
	six.sin6_port = four.sin_port = htons(atoi(argv[1]));
	fd = socket(AF_INET6, SOCK_DGRAM, 0);
	if (fd >= 0) {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		if (bind(fd, (struct sockaddr *)&six, sizeof(six)) < 0) {
			perror("udpecho: bind");
			return 1;
		}
	} else {
		fd = socket(AF_INET, SOCK_DGRAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&four, sizeof(four)) < 0) {
			perror("udpecho: bind");
			return 1;
		}
	}
	for (;;) {
		socklen_t size = sizeof(peer);
		ssize_t got = recvfrom(fd, buffer, sizeof(buffer), 0, (struct sockaddr *)&peer, &size);

		if (got >= 0)
			sendto(fd, buffer, (size_t)got, 0, (struct sockaddr *)&peer, size);
	}
}
